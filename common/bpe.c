/* GPT-2 byte-level BPE (the encode/decode half of LQ_TOKENIZER_GPT2; tokenizer.c builds the
 * vocabulary and merge maps, splits out special tokens, and calls in here with plain text).
 *
 * Encoding one stretch of text:
 *   1. pre-tokenize: cut the text into pieces with the pre-tokenizer named by t->pre. The
 *      patterns are the regular expressions of the reference tokenizers, implemented by hand
 *      (no regex library), one matcher per family:
 *        gpt2    's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 *                (names: "gpt2", "default", "mpt", "olmo"; also what a Hugging Face ByteLevel
 *                pre-tokenizer with use_regex does)
 *        smollm  every \p{N} code point is a piece of its own, then gpt2 on what lies between
 *                (llama.cpp's list for "smollm", "starcoder", "refact", "codeshell"; Hugging
 *                Face: Digits(individual_digits) then ByteLevel)
 *        llama3  (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
 *                 ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+     ("llama-bpe", "llama3",
 *                "dbrx", "smaug-bpe"); a piece that is itself a vocabulary entry is taken
 *                whole (Hugging Face's ignore_merges, which Llama 3 sets)
 *        qwen2   as llama3 with \p{N} instead of \p{N}{1,3} ("qwen2", "stablelm2")
 *      Note: for "default" llama.cpp applies an older ad-hoc list; we apply plain GPT-2, which
 *      is what the Hugging Face tokenizer of such a model does.
 *   2. map every byte of a piece to GPT-2's printable alphabet (bytes 33–126, 161–172 and
 *      174–255 stand for themselves, the other 68 bytes for U+0100 upwards in order);
 *   3. merge: repeatedly join the adjacent pair of symbols whose "left right" merge has the
 *      lowest rank (ties: leftmost), until no adjacent pair has a merge. A heap of candidate
 *      pairs with lazy invalidation makes this O(n log n) per piece, so a long run of spaces
 *      or a long word without spaces cannot make it quadratic;
 *   4. look each symbol up in the vocabulary; a symbol that is not a token (a vocabulary
 *      without some merge result) falls back to one token per byte-level character, and a
 *      character without a token to unk (an error when there is no unk).
 *
 * \p{L}, \p{N} and \s use Unicode 14 general categories (L*, N*) and the White_Space
 * property, from tables generated with Python's unicodedata (the generator is in the comment
 * above the tables). Invalid UTF-8 bytes count as single "other" characters (neither letter,
 * number nor space) and still encode, byte by byte. Case-insensitive contractions in llama3
 * fold ASCII only, as the reference regex engines do for these patterns. */
#include "tokenizer_internal.h"

#include <stdlib.h>
#include <string.h>

/* ---- Unicode classes ----------------------------------------------------------------------
 * Generated with Python 3.11 (Unicode 14.0): inclusive [first, last] runs of the code points
 * whose general category starts with "L" (letters) and "N" (numbers):
 *   import unicodedata as u
 *   def runs(p):
 *       out, start = [], None
 *       for c in range(0x110001):
 *           hit = c < 0x110000 and p(u.category(chr(c)))
 *           if hit and start is None: start = c
 *           if not hit and start is not None: out.append((start, c - 1)); start = None
 *       return out
 *   letters, numbers = runs(lambda k: k[0] == "L"), runs(lambda k: k[0] == "N")
 * Code points assigned after Unicode 14 count as "other". */
static const uint32_t unicode_letters[][2] = {
    {0x41,0x5A}, {0x61,0x7A}, {0xAA,0xAA}, {0xB5,0xB5}, {0xBA,0xBA}, {0xC0,0xD6}, {0xD8,0xF6},
    {0xF8,0x2C1}, {0x2C6,0x2D1}, {0x2E0,0x2E4}, {0x2EC,0x2EC}, {0x2EE,0x2EE}, {0x370,0x374},
    {0x376,0x377}, {0x37A,0x37D}, {0x37F,0x37F}, {0x386,0x386}, {0x388,0x38A}, {0x38C,0x38C},
    {0x38E,0x3A1}, {0x3A3,0x3F5}, {0x3F7,0x481}, {0x48A,0x52F}, {0x531,0x556}, {0x559,0x559},
    {0x560,0x588}, {0x5D0,0x5EA}, {0x5EF,0x5F2}, {0x620,0x64A}, {0x66E,0x66F}, {0x671,0x6D3},
    {0x6D5,0x6D5}, {0x6E5,0x6E6}, {0x6EE,0x6EF}, {0x6FA,0x6FC}, {0x6FF,0x6FF}, {0x710,0x710},
    {0x712,0x72F}, {0x74D,0x7A5}, {0x7B1,0x7B1}, {0x7CA,0x7EA}, {0x7F4,0x7F5}, {0x7FA,0x7FA},
    {0x800,0x815}, {0x81A,0x81A}, {0x824,0x824}, {0x828,0x828}, {0x840,0x858}, {0x860,0x86A},
    {0x870,0x887}, {0x889,0x88E}, {0x8A0,0x8C9}, {0x904,0x939}, {0x93D,0x93D}, {0x950,0x950},
    {0x958,0x961}, {0x971,0x980}, {0x985,0x98C}, {0x98F,0x990}, {0x993,0x9A8}, {0x9AA,0x9B0},
    {0x9B2,0x9B2}, {0x9B6,0x9B9}, {0x9BD,0x9BD}, {0x9CE,0x9CE}, {0x9DC,0x9DD}, {0x9DF,0x9E1},
    {0x9F0,0x9F1}, {0x9FC,0x9FC}, {0xA05,0xA0A}, {0xA0F,0xA10}, {0xA13,0xA28}, {0xA2A,0xA30},
    {0xA32,0xA33}, {0xA35,0xA36}, {0xA38,0xA39}, {0xA59,0xA5C}, {0xA5E,0xA5E}, {0xA72,0xA74},
    {0xA85,0xA8D}, {0xA8F,0xA91}, {0xA93,0xAA8}, {0xAAA,0xAB0}, {0xAB2,0xAB3}, {0xAB5,0xAB9},
    {0xABD,0xABD}, {0xAD0,0xAD0}, {0xAE0,0xAE1}, {0xAF9,0xAF9}, {0xB05,0xB0C}, {0xB0F,0xB10},
    {0xB13,0xB28}, {0xB2A,0xB30}, {0xB32,0xB33}, {0xB35,0xB39}, {0xB3D,0xB3D}, {0xB5C,0xB5D},
    {0xB5F,0xB61}, {0xB71,0xB71}, {0xB83,0xB83}, {0xB85,0xB8A}, {0xB8E,0xB90}, {0xB92,0xB95},
    {0xB99,0xB9A}, {0xB9C,0xB9C}, {0xB9E,0xB9F}, {0xBA3,0xBA4}, {0xBA8,0xBAA}, {0xBAE,0xBB9},
    {0xBD0,0xBD0}, {0xC05,0xC0C}, {0xC0E,0xC10}, {0xC12,0xC28}, {0xC2A,0xC39}, {0xC3D,0xC3D},
    {0xC58,0xC5A}, {0xC5D,0xC5D}, {0xC60,0xC61}, {0xC80,0xC80}, {0xC85,0xC8C}, {0xC8E,0xC90},
    {0xC92,0xCA8}, {0xCAA,0xCB3}, {0xCB5,0xCB9}, {0xCBD,0xCBD}, {0xCDD,0xCDE}, {0xCE0,0xCE1},
    {0xCF1,0xCF2}, {0xD04,0xD0C}, {0xD0E,0xD10}, {0xD12,0xD3A}, {0xD3D,0xD3D}, {0xD4E,0xD4E},
    {0xD54,0xD56}, {0xD5F,0xD61}, {0xD7A,0xD7F}, {0xD85,0xD96}, {0xD9A,0xDB1}, {0xDB3,0xDBB},
    {0xDBD,0xDBD}, {0xDC0,0xDC6}, {0xE01,0xE30}, {0xE32,0xE33}, {0xE40,0xE46}, {0xE81,0xE82},
    {0xE84,0xE84}, {0xE86,0xE8A}, {0xE8C,0xEA3}, {0xEA5,0xEA5}, {0xEA7,0xEB0}, {0xEB2,0xEB3},
    {0xEBD,0xEBD}, {0xEC0,0xEC4}, {0xEC6,0xEC6}, {0xEDC,0xEDF}, {0xF00,0xF00}, {0xF40,0xF47},
    {0xF49,0xF6C}, {0xF88,0xF8C}, {0x1000,0x102A}, {0x103F,0x103F}, {0x1050,0x1055},
    {0x105A,0x105D}, {0x1061,0x1061}, {0x1065,0x1066}, {0x106E,0x1070}, {0x1075,0x1081},
    {0x108E,0x108E}, {0x10A0,0x10C5}, {0x10C7,0x10C7}, {0x10CD,0x10CD}, {0x10D0,0x10FA},
    {0x10FC,0x1248}, {0x124A,0x124D}, {0x1250,0x1256}, {0x1258,0x1258}, {0x125A,0x125D},
    {0x1260,0x1288}, {0x128A,0x128D}, {0x1290,0x12B0}, {0x12B2,0x12B5}, {0x12B8,0x12BE},
    {0x12C0,0x12C0}, {0x12C2,0x12C5}, {0x12C8,0x12D6}, {0x12D8,0x1310}, {0x1312,0x1315},
    {0x1318,0x135A}, {0x1380,0x138F}, {0x13A0,0x13F5}, {0x13F8,0x13FD}, {0x1401,0x166C},
    {0x166F,0x167F}, {0x1681,0x169A}, {0x16A0,0x16EA}, {0x16F1,0x16F8}, {0x1700,0x1711},
    {0x171F,0x1731}, {0x1740,0x1751}, {0x1760,0x176C}, {0x176E,0x1770}, {0x1780,0x17B3},
    {0x17D7,0x17D7}, {0x17DC,0x17DC}, {0x1820,0x1878}, {0x1880,0x1884}, {0x1887,0x18A8},
    {0x18AA,0x18AA}, {0x18B0,0x18F5}, {0x1900,0x191E}, {0x1950,0x196D}, {0x1970,0x1974},
    {0x1980,0x19AB}, {0x19B0,0x19C9}, {0x1A00,0x1A16}, {0x1A20,0x1A54}, {0x1AA7,0x1AA7},
    {0x1B05,0x1B33}, {0x1B45,0x1B4C}, {0x1B83,0x1BA0}, {0x1BAE,0x1BAF}, {0x1BBA,0x1BE5},
    {0x1C00,0x1C23}, {0x1C4D,0x1C4F}, {0x1C5A,0x1C7D}, {0x1C80,0x1C88}, {0x1C90,0x1CBA},
    {0x1CBD,0x1CBF}, {0x1CE9,0x1CEC}, {0x1CEE,0x1CF3}, {0x1CF5,0x1CF6}, {0x1CFA,0x1CFA},
    {0x1D00,0x1DBF}, {0x1E00,0x1F15}, {0x1F18,0x1F1D}, {0x1F20,0x1F45}, {0x1F48,0x1F4D},
    {0x1F50,0x1F57}, {0x1F59,0x1F59}, {0x1F5B,0x1F5B}, {0x1F5D,0x1F5D}, {0x1F5F,0x1F7D},
    {0x1F80,0x1FB4}, {0x1FB6,0x1FBC}, {0x1FBE,0x1FBE}, {0x1FC2,0x1FC4}, {0x1FC6,0x1FCC},
    {0x1FD0,0x1FD3}, {0x1FD6,0x1FDB}, {0x1FE0,0x1FEC}, {0x1FF2,0x1FF4}, {0x1FF6,0x1FFC},
    {0x2071,0x2071}, {0x207F,0x207F}, {0x2090,0x209C}, {0x2102,0x2102}, {0x2107,0x2107},
    {0x210A,0x2113}, {0x2115,0x2115}, {0x2119,0x211D}, {0x2124,0x2124}, {0x2126,0x2126},
    {0x2128,0x2128}, {0x212A,0x212D}, {0x212F,0x2139}, {0x213C,0x213F}, {0x2145,0x2149},
    {0x214E,0x214E}, {0x2183,0x2184}, {0x2C00,0x2CE4}, {0x2CEB,0x2CEE}, {0x2CF2,0x2CF3},
    {0x2D00,0x2D25}, {0x2D27,0x2D27}, {0x2D2D,0x2D2D}, {0x2D30,0x2D67}, {0x2D6F,0x2D6F},
    {0x2D80,0x2D96}, {0x2DA0,0x2DA6}, {0x2DA8,0x2DAE}, {0x2DB0,0x2DB6}, {0x2DB8,0x2DBE},
    {0x2DC0,0x2DC6}, {0x2DC8,0x2DCE}, {0x2DD0,0x2DD6}, {0x2DD8,0x2DDE}, {0x2E2F,0x2E2F},
    {0x3005,0x3006}, {0x3031,0x3035}, {0x303B,0x303C}, {0x3041,0x3096}, {0x309D,0x309F},
    {0x30A1,0x30FA}, {0x30FC,0x30FF}, {0x3105,0x312F}, {0x3131,0x318E}, {0x31A0,0x31BF},
    {0x31F0,0x31FF}, {0x3400,0x4DBF}, {0x4E00,0xA48C}, {0xA4D0,0xA4FD}, {0xA500,0xA60C},
    {0xA610,0xA61F}, {0xA62A,0xA62B}, {0xA640,0xA66E}, {0xA67F,0xA69D}, {0xA6A0,0xA6E5},
    {0xA717,0xA71F}, {0xA722,0xA788}, {0xA78B,0xA7CA}, {0xA7D0,0xA7D1}, {0xA7D3,0xA7D3},
    {0xA7D5,0xA7D9}, {0xA7F2,0xA801}, {0xA803,0xA805}, {0xA807,0xA80A}, {0xA80C,0xA822},
    {0xA840,0xA873}, {0xA882,0xA8B3}, {0xA8F2,0xA8F7}, {0xA8FB,0xA8FB}, {0xA8FD,0xA8FE},
    {0xA90A,0xA925}, {0xA930,0xA946}, {0xA960,0xA97C}, {0xA984,0xA9B2}, {0xA9CF,0xA9CF},
    {0xA9E0,0xA9E4}, {0xA9E6,0xA9EF}, {0xA9FA,0xA9FE}, {0xAA00,0xAA28}, {0xAA40,0xAA42},
    {0xAA44,0xAA4B}, {0xAA60,0xAA76}, {0xAA7A,0xAA7A}, {0xAA7E,0xAAAF}, {0xAAB1,0xAAB1},
    {0xAAB5,0xAAB6}, {0xAAB9,0xAABD}, {0xAAC0,0xAAC0}, {0xAAC2,0xAAC2}, {0xAADB,0xAADD},
    {0xAAE0,0xAAEA}, {0xAAF2,0xAAF4}, {0xAB01,0xAB06}, {0xAB09,0xAB0E}, {0xAB11,0xAB16},
    {0xAB20,0xAB26}, {0xAB28,0xAB2E}, {0xAB30,0xAB5A}, {0xAB5C,0xAB69}, {0xAB70,0xABE2},
    {0xAC00,0xD7A3}, {0xD7B0,0xD7C6}, {0xD7CB,0xD7FB}, {0xF900,0xFA6D}, {0xFA70,0xFAD9},
    {0xFB00,0xFB06}, {0xFB13,0xFB17}, {0xFB1D,0xFB1D}, {0xFB1F,0xFB28}, {0xFB2A,0xFB36},
    {0xFB38,0xFB3C}, {0xFB3E,0xFB3E}, {0xFB40,0xFB41}, {0xFB43,0xFB44}, {0xFB46,0xFBB1},
    {0xFBD3,0xFD3D}, {0xFD50,0xFD8F}, {0xFD92,0xFDC7}, {0xFDF0,0xFDFB}, {0xFE70,0xFE74},
    {0xFE76,0xFEFC}, {0xFF21,0xFF3A}, {0xFF41,0xFF5A}, {0xFF66,0xFFBE}, {0xFFC2,0xFFC7},
    {0xFFCA,0xFFCF}, {0xFFD2,0xFFD7}, {0xFFDA,0xFFDC}, {0x10000,0x1000B}, {0x1000D,0x10026},
    {0x10028,0x1003A}, {0x1003C,0x1003D}, {0x1003F,0x1004D}, {0x10050,0x1005D}, {0x10080,0x100FA},
    {0x10280,0x1029C}, {0x102A0,0x102D0}, {0x10300,0x1031F}, {0x1032D,0x10340}, {0x10342,0x10349},
    {0x10350,0x10375}, {0x10380,0x1039D}, {0x103A0,0x103C3}, {0x103C8,0x103CF}, {0x10400,0x1049D},
    {0x104B0,0x104D3}, {0x104D8,0x104FB}, {0x10500,0x10527}, {0x10530,0x10563}, {0x10570,0x1057A},
    {0x1057C,0x1058A}, {0x1058C,0x10592}, {0x10594,0x10595}, {0x10597,0x105A1}, {0x105A3,0x105B1},
    {0x105B3,0x105B9}, {0x105BB,0x105BC}, {0x10600,0x10736}, {0x10740,0x10755}, {0x10760,0x10767},
    {0x10780,0x10785}, {0x10787,0x107B0}, {0x107B2,0x107BA}, {0x10800,0x10805}, {0x10808,0x10808},
    {0x1080A,0x10835}, {0x10837,0x10838}, {0x1083C,0x1083C}, {0x1083F,0x10855}, {0x10860,0x10876},
    {0x10880,0x1089E}, {0x108E0,0x108F2}, {0x108F4,0x108F5}, {0x10900,0x10915}, {0x10920,0x10939},
    {0x10980,0x109B7}, {0x109BE,0x109BF}, {0x10A00,0x10A00}, {0x10A10,0x10A13}, {0x10A15,0x10A17},
    {0x10A19,0x10A35}, {0x10A60,0x10A7C}, {0x10A80,0x10A9C}, {0x10AC0,0x10AC7}, {0x10AC9,0x10AE4},
    {0x10B00,0x10B35}, {0x10B40,0x10B55}, {0x10B60,0x10B72}, {0x10B80,0x10B91}, {0x10C00,0x10C48},
    {0x10C80,0x10CB2}, {0x10CC0,0x10CF2}, {0x10D00,0x10D23}, {0x10E80,0x10EA9}, {0x10EB0,0x10EB1},
    {0x10F00,0x10F1C}, {0x10F27,0x10F27}, {0x10F30,0x10F45}, {0x10F70,0x10F81}, {0x10FB0,0x10FC4},
    {0x10FE0,0x10FF6}, {0x11003,0x11037}, {0x11071,0x11072}, {0x11075,0x11075}, {0x11083,0x110AF},
    {0x110D0,0x110E8}, {0x11103,0x11126}, {0x11144,0x11144}, {0x11147,0x11147}, {0x11150,0x11172},
    {0x11176,0x11176}, {0x11183,0x111B2}, {0x111C1,0x111C4}, {0x111DA,0x111DA}, {0x111DC,0x111DC},
    {0x11200,0x11211}, {0x11213,0x1122B}, {0x11280,0x11286}, {0x11288,0x11288}, {0x1128A,0x1128D},
    {0x1128F,0x1129D}, {0x1129F,0x112A8}, {0x112B0,0x112DE}, {0x11305,0x1130C}, {0x1130F,0x11310},
    {0x11313,0x11328}, {0x1132A,0x11330}, {0x11332,0x11333}, {0x11335,0x11339}, {0x1133D,0x1133D},
    {0x11350,0x11350}, {0x1135D,0x11361}, {0x11400,0x11434}, {0x11447,0x1144A}, {0x1145F,0x11461},
    {0x11480,0x114AF}, {0x114C4,0x114C5}, {0x114C7,0x114C7}, {0x11580,0x115AE}, {0x115D8,0x115DB},
    {0x11600,0x1162F}, {0x11644,0x11644}, {0x11680,0x116AA}, {0x116B8,0x116B8}, {0x11700,0x1171A},
    {0x11740,0x11746}, {0x11800,0x1182B}, {0x118A0,0x118DF}, {0x118FF,0x11906}, {0x11909,0x11909},
    {0x1190C,0x11913}, {0x11915,0x11916}, {0x11918,0x1192F}, {0x1193F,0x1193F}, {0x11941,0x11941},
    {0x119A0,0x119A7}, {0x119AA,0x119D0}, {0x119E1,0x119E1}, {0x119E3,0x119E3}, {0x11A00,0x11A00},
    {0x11A0B,0x11A32}, {0x11A3A,0x11A3A}, {0x11A50,0x11A50}, {0x11A5C,0x11A89}, {0x11A9D,0x11A9D},
    {0x11AB0,0x11AF8}, {0x11C00,0x11C08}, {0x11C0A,0x11C2E}, {0x11C40,0x11C40}, {0x11C72,0x11C8F},
    {0x11D00,0x11D06}, {0x11D08,0x11D09}, {0x11D0B,0x11D30}, {0x11D46,0x11D46}, {0x11D60,0x11D65},
    {0x11D67,0x11D68}, {0x11D6A,0x11D89}, {0x11D98,0x11D98}, {0x11EE0,0x11EF2}, {0x11FB0,0x11FB0},
    {0x12000,0x12399}, {0x12480,0x12543}, {0x12F90,0x12FF0}, {0x13000,0x1342E}, {0x14400,0x14646},
    {0x16800,0x16A38}, {0x16A40,0x16A5E}, {0x16A70,0x16ABE}, {0x16AD0,0x16AED}, {0x16B00,0x16B2F},
    {0x16B40,0x16B43}, {0x16B63,0x16B77}, {0x16B7D,0x16B8F}, {0x16E40,0x16E7F}, {0x16F00,0x16F4A},
    {0x16F50,0x16F50}, {0x16F93,0x16F9F}, {0x16FE0,0x16FE1}, {0x16FE3,0x16FE3}, {0x17000,0x187F7},
    {0x18800,0x18CD5}, {0x18D00,0x18D08}, {0x1AFF0,0x1AFF3}, {0x1AFF5,0x1AFFB}, {0x1AFFD,0x1AFFE},
    {0x1B000,0x1B122}, {0x1B150,0x1B152}, {0x1B164,0x1B167}, {0x1B170,0x1B2FB}, {0x1BC00,0x1BC6A},
    {0x1BC70,0x1BC7C}, {0x1BC80,0x1BC88}, {0x1BC90,0x1BC99}, {0x1D400,0x1D454}, {0x1D456,0x1D49C},
    {0x1D49E,0x1D49F}, {0x1D4A2,0x1D4A2}, {0x1D4A5,0x1D4A6}, {0x1D4A9,0x1D4AC}, {0x1D4AE,0x1D4B9},
    {0x1D4BB,0x1D4BB}, {0x1D4BD,0x1D4C3}, {0x1D4C5,0x1D505}, {0x1D507,0x1D50A}, {0x1D50D,0x1D514},
    {0x1D516,0x1D51C}, {0x1D51E,0x1D539}, {0x1D53B,0x1D53E}, {0x1D540,0x1D544}, {0x1D546,0x1D546},
    {0x1D54A,0x1D550}, {0x1D552,0x1D6A5}, {0x1D6A8,0x1D6C0}, {0x1D6C2,0x1D6DA}, {0x1D6DC,0x1D6FA},
    {0x1D6FC,0x1D714}, {0x1D716,0x1D734}, {0x1D736,0x1D74E}, {0x1D750,0x1D76E}, {0x1D770,0x1D788},
    {0x1D78A,0x1D7A8}, {0x1D7AA,0x1D7C2}, {0x1D7C4,0x1D7CB}, {0x1DF00,0x1DF1E}, {0x1E100,0x1E12C},
    {0x1E137,0x1E13D}, {0x1E14E,0x1E14E}, {0x1E290,0x1E2AD}, {0x1E2C0,0x1E2EB}, {0x1E7E0,0x1E7E6},
    {0x1E7E8,0x1E7EB}, {0x1E7ED,0x1E7EE}, {0x1E7F0,0x1E7FE}, {0x1E800,0x1E8C4}, {0x1E900,0x1E943},
    {0x1E94B,0x1E94B}, {0x1EE00,0x1EE03}, {0x1EE05,0x1EE1F}, {0x1EE21,0x1EE22}, {0x1EE24,0x1EE24},
    {0x1EE27,0x1EE27}, {0x1EE29,0x1EE32}, {0x1EE34,0x1EE37}, {0x1EE39,0x1EE39}, {0x1EE3B,0x1EE3B},
    {0x1EE42,0x1EE42}, {0x1EE47,0x1EE47}, {0x1EE49,0x1EE49}, {0x1EE4B,0x1EE4B}, {0x1EE4D,0x1EE4F},
    {0x1EE51,0x1EE52}, {0x1EE54,0x1EE54}, {0x1EE57,0x1EE57}, {0x1EE59,0x1EE59}, {0x1EE5B,0x1EE5B},
    {0x1EE5D,0x1EE5D}, {0x1EE5F,0x1EE5F}, {0x1EE61,0x1EE62}, {0x1EE64,0x1EE64}, {0x1EE67,0x1EE6A},
    {0x1EE6C,0x1EE72}, {0x1EE74,0x1EE77}, {0x1EE79,0x1EE7C}, {0x1EE7E,0x1EE7E}, {0x1EE80,0x1EE89},
    {0x1EE8B,0x1EE9B}, {0x1EEA1,0x1EEA3}, {0x1EEA5,0x1EEA9}, {0x1EEAB,0x1EEBB}, {0x20000,0x2A6DF},
    {0x2A700,0x2B738}, {0x2B740,0x2B81D}, {0x2B820,0x2CEA1}, {0x2CEB0,0x2EBE0}, {0x2F800,0x2FA1D},
    {0x30000,0x3134A},
};
static const uint32_t unicode_numbers[][2] = {
    {0x30,0x39}, {0xB2,0xB3}, {0xB9,0xB9}, {0xBC,0xBE}, {0x660,0x669}, {0x6F0,0x6F9},
    {0x7C0,0x7C9}, {0x966,0x96F}, {0x9E6,0x9EF}, {0x9F4,0x9F9}, {0xA66,0xA6F}, {0xAE6,0xAEF},
    {0xB66,0xB6F}, {0xB72,0xB77}, {0xBE6,0xBF2}, {0xC66,0xC6F}, {0xC78,0xC7E}, {0xCE6,0xCEF},
    {0xD58,0xD5E}, {0xD66,0xD78}, {0xDE6,0xDEF}, {0xE50,0xE59}, {0xED0,0xED9}, {0xF20,0xF33},
    {0x1040,0x1049}, {0x1090,0x1099}, {0x1369,0x137C}, {0x16EE,0x16F0}, {0x17E0,0x17E9},
    {0x17F0,0x17F9}, {0x1810,0x1819}, {0x1946,0x194F}, {0x19D0,0x19DA}, {0x1A80,0x1A89},
    {0x1A90,0x1A99}, {0x1B50,0x1B59}, {0x1BB0,0x1BB9}, {0x1C40,0x1C49}, {0x1C50,0x1C59},
    {0x2070,0x2070}, {0x2074,0x2079}, {0x2080,0x2089}, {0x2150,0x2182}, {0x2185,0x2189},
    {0x2460,0x249B}, {0x24EA,0x24FF}, {0x2776,0x2793}, {0x2CFD,0x2CFD}, {0x3007,0x3007},
    {0x3021,0x3029}, {0x3038,0x303A}, {0x3192,0x3195}, {0x3220,0x3229}, {0x3248,0x324F},
    {0x3251,0x325F}, {0x3280,0x3289}, {0x32B1,0x32BF}, {0xA620,0xA629}, {0xA6E6,0xA6EF},
    {0xA830,0xA835}, {0xA8D0,0xA8D9}, {0xA900,0xA909}, {0xA9D0,0xA9D9}, {0xA9F0,0xA9F9},
    {0xAA50,0xAA59}, {0xABF0,0xABF9}, {0xFF10,0xFF19}, {0x10107,0x10133}, {0x10140,0x10178},
    {0x1018A,0x1018B}, {0x102E1,0x102FB}, {0x10320,0x10323}, {0x10341,0x10341}, {0x1034A,0x1034A},
    {0x103D1,0x103D5}, {0x104A0,0x104A9}, {0x10858,0x1085F}, {0x10879,0x1087F}, {0x108A7,0x108AF},
    {0x108FB,0x108FF}, {0x10916,0x1091B}, {0x109BC,0x109BD}, {0x109C0,0x109CF}, {0x109D2,0x109FF},
    {0x10A40,0x10A48}, {0x10A7D,0x10A7E}, {0x10A9D,0x10A9F}, {0x10AEB,0x10AEF}, {0x10B58,0x10B5F},
    {0x10B78,0x10B7F}, {0x10BA9,0x10BAF}, {0x10CFA,0x10CFF}, {0x10D30,0x10D39}, {0x10E60,0x10E7E},
    {0x10F1D,0x10F26}, {0x10F51,0x10F54}, {0x10FC5,0x10FCB}, {0x11052,0x1106F}, {0x110F0,0x110F9},
    {0x11136,0x1113F}, {0x111D0,0x111D9}, {0x111E1,0x111F4}, {0x112F0,0x112F9}, {0x11450,0x11459},
    {0x114D0,0x114D9}, {0x11650,0x11659}, {0x116C0,0x116C9}, {0x11730,0x1173B}, {0x118E0,0x118F2},
    {0x11950,0x11959}, {0x11C50,0x11C6C}, {0x11D50,0x11D59}, {0x11DA0,0x11DA9}, {0x11FC0,0x11FD4},
    {0x12400,0x1246E}, {0x16A60,0x16A69}, {0x16AC0,0x16AC9}, {0x16B50,0x16B59}, {0x16B5B,0x16B61},
    {0x16E80,0x16E96}, {0x1D2E0,0x1D2F3}, {0x1D360,0x1D378}, {0x1D7CE,0x1D7FF}, {0x1E140,0x1E149},
    {0x1E2F0,0x1E2F9}, {0x1E8C7,0x1E8CF}, {0x1E950,0x1E959}, {0x1EC71,0x1ECAB}, {0x1ECAD,0x1ECAF},
    {0x1ECB1,0x1ECB4}, {0x1ED01,0x1ED2D}, {0x1ED2F,0x1ED3D}, {0x1F100,0x1F10C}, {0x1FBF0,0x1FBF9},
};

static int in_ranges(const uint32_t (*r)[2], size_t n, uint32_t cp) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cp < r[mid][0]) hi = mid;
        else if (cp > r[mid][1]) lo = mid + 1;
        else return 1;
    }
    return 0;
}

enum { CLASS_OTHER = 0, CLASS_LETTER = 1, CLASS_NUMBER = 2, CLASS_SPACE = 3 };

static int is_white_space(uint32_t cp) {
    return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
           cp == 0x205F || cp == 0x3000;
}

static int classify(uint32_t cp) {
    if (cp < 0x80) {   /* ASCII fast path */
        if ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z') return CLASS_LETTER;
        if (cp >= '0' && cp <= '9') return CLASS_NUMBER;
        return is_white_space(cp) ? CLASS_SPACE : CLASS_OTHER;
    }
    if (is_white_space(cp)) return CLASS_SPACE;
    if (in_ranges(unicode_letters, sizeof unicode_letters / sizeof unicode_letters[0], cp))
        return CLASS_LETTER;
    if (in_ranges(unicode_numbers, sizeof unicode_numbers / sizeof unicode_numbers[0], cp))
        return CLASS_NUMBER;
    return CLASS_OTHER;
}

/* Decodes one UTF-8 code point at s[0..len); invalid or truncated sequences (overlong forms,
 * surrogates, > U+10FFFF) are one byte of CLASS_OTHER, reported as *cp = 0xFFFFFFFF. */
static size_t utf8_next(const unsigned char *s, size_t len, uint32_t *cp) {
    unsigned char c = s[0];
    size_t n;
    uint32_t v, min;
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if ((c & 0xE0) == 0xC0) n = 2, v = c & 0x1F, min = 0x80;
    else if ((c & 0xF0) == 0xE0) n = 3, v = c & 0x0F, min = 0x800;
    else if ((c & 0xF8) == 0xF0) n = 4, v = c & 0x07, min = 0x10000;
    else goto invalid;
    if (n > len) goto invalid;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) goto invalid;
        v = (v << 6) | (s[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) goto invalid;
    *cp = v;
    return n;
invalid:
    *cp = 0xFFFFFFFFu;
    return 1;
}

/* ---- the byte-level alphabet -------------------------------------------------------------
 * GPT-2's bytes_to_unicode: the 188 printable bytes stand for themselves; the other 68
 * (0–32, 127–160, 173) map in order to U+0100..U+0143. Both directions are arithmetic. */
static int byte_is_printable(int b) {
    return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
}

static uint32_t byte_to_cp(int b) {
    if (byte_is_printable(b)) return (uint32_t)b;
    if (b <= 32) return 256u + (uint32_t)b;
    if (b <= 160) return 256u + 33u + (uint32_t)(b - 127);
    return 256u + 67u;   /* 173, the soft hyphen */
}

/* The byte an alphabet code point stands for, or −1. */
static int cp_to_byte(uint32_t cp) {
    if (cp < 256) return byte_is_printable((int)cp) ? (int)cp : -1;
    if (cp <= 256 + 32) return (int)(cp - 256);
    if (cp <= 256 + 66) return (int)(cp - 256 - 33 + 127);
    if (cp == 256 + 67) return 173;
    return -1;
}

/* UTF-8 of byte b's character (1 or 2 bytes); returns the length. */
static size_t byte_utf8(int b, char *out) {
    uint32_t cp = byte_to_cp(b);
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    out[0] = (char)(0xC0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
}

/* ---- pre-tokenizers ---------------------------------------------------------------------- */
typedef enum { PRE_GPT2, PRE_SMOLLM, PRE_LLAMA3, PRE_QWEN2, PRE_UNKNOWN } pre_kind;

static const struct {
    const char *name;
    pre_kind kind;
} pre_names[] = {
    {"gpt2", PRE_GPT2},       {"default", PRE_GPT2},   {"", PRE_GPT2},
    {"mpt", PRE_GPT2},        {"olmo", PRE_GPT2},      {"smollm", PRE_SMOLLM},
    {"starcoder", PRE_SMOLLM},{"refact", PRE_SMOLLM},  {"codeshell", PRE_SMOLLM},
    {"llama-bpe", PRE_LLAMA3},{"llama3", PRE_LLAMA3},  {"dbrx", PRE_LLAMA3},
    {"smaug-bpe", PRE_LLAMA3},{"qwen2", PRE_QWEN2},    {"stablelm2", PRE_QWEN2},
};

static pre_kind pre_lookup(const char *pre) {
    if (!pre) return PRE_GPT2;
    for (size_t i = 0; i < sizeof pre_names / sizeof pre_names[0]; i++)
        if (!strcmp(pre, pre_names[i].name)) return pre_names[i].kind;
    return PRE_UNKNOWN;
}

int lq_bpe_pre_supported(const char *pre) { return pre_lookup(pre) != PRE_UNKNOWN; }

const char *lq_bpe_pre_list(void) {
    return "gpt2, default, mpt, olmo, smollm, starcoder, refact, codeshell, llama-bpe, llama3, "
           "dbrx, smaug-bpe, qwen2, stablelm2";
}

/* The text as code points with their classes and byte offsets (off[n] = total length). */
typedef struct {
    uint32_t *cp;
    unsigned char *cls;
    size_t *off;
    size_t n;
} cps;

static int is_rn(uint32_t c) { return c == '\r' || c == '\n'; }
static uint32_t ascii_lower(uint32_t c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

/* 's 't 're 've 'm 'll 'd at i (case-folded when fold): the match length or 0. */
static size_t match_contraction(const cps *t, size_t i, size_t end, int fold) {
    if (t->cp[i] != '\'' || i + 1 >= end) return 0;
    uint32_t a = fold ? ascii_lower(t->cp[i + 1]) : t->cp[i + 1];
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
    if (i + 2 >= end) return 0;
    uint32_t b = fold ? ascii_lower(t->cp[i + 2]) : t->cp[i + 2];
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
    return 0;
}

/* \s+(?!\S)|\s+ at i (t->cp[i] is white space): a run followed by non-space leaves its last
 * character to start the next piece, unless the run is that one character. */
static size_t match_space_run(const cps *t, size_t i, size_t end) {
    size_t j = i;
    while (j < end && t->cls[j] == CLASS_SPACE) j++;
    if (j == end || j - i == 1) return j - i;
    return j - i - 1;
}

/* ` ?X+` where X is a class: the optional space only when X follows it. */
static size_t match_space_class_run(const cps *t, size_t i, size_t end, int cls) {
    size_t j = i;
    if (t->cp[j] == ' ' && j + 1 < end && t->cls[j + 1] == cls) j++;
    if (t->cls[j] != cls) return 0;
    while (j < end && t->cls[j] == cls) j++;
    return j - i;
}

static size_t match_gpt2(const cps *t, size_t i, size_t end) {
    size_t n;
    if ((n = match_contraction(t, i, end, 0))) return n;
    if ((n = match_space_class_run(t, i, end, CLASS_LETTER))) return n;
    if ((n = match_space_class_run(t, i, end, CLASS_NUMBER))) return n;
    if ((n = match_space_class_run(t, i, end, CLASS_OTHER))) return n;
    return match_space_run(t, i, end);   /* the only class left is white space */
}

/* llama3 (max_digits 3) and qwen2 (max_digits 1). */
static size_t match_llama3(const cps *t, size_t i, size_t end, size_t max_digits) {
    size_t n, j;
    if ((n = match_contraction(t, i, end, 1))) return n;
    /* [^\r\n\p{L}\p{N}]?\p{L}+ */
    j = i;
    if (t->cls[j] != CLASS_LETTER && t->cls[j] != CLASS_NUMBER && !is_rn(t->cp[j]) && j + 1 < end &&
        t->cls[j + 1] == CLASS_LETTER)
        j++;
    if (t->cls[j] == CLASS_LETTER) {
        while (j < end && t->cls[j] == CLASS_LETTER) j++;
        return j - i;
    }
    /* \p{N}{1,max} */
    if (t->cls[i] == CLASS_NUMBER) {
        for (j = i; j < end && j - i < max_digits && t->cls[j] == CLASS_NUMBER; j++) {}
        return j - i;
    }
    /*  ?[^\s\p{L}\p{N}]+[\r\n]* */
    if ((n = match_space_class_run(t, i, end, CLASS_OTHER))) {
        j = i + n;
        while (j < end && is_rn(t->cp[j])) j++;
        return j - i;
    }
    /* \s*[\r\n]+ : up to and including the last \r or \n of the white-space run */
    size_t run_end = i, last_rn = 0;
    int have_rn = 0;
    while (run_end < end && t->cls[run_end] == CLASS_SPACE) {
        if (is_rn(t->cp[run_end])) last_rn = run_end, have_rn = 1;
        run_end++;
    }
    if (have_rn) return last_rn + 1 - i;
    return match_space_run(t, i, end);
}

/* ---- merging ------------------------------------------------------------------------------ */
typedef struct {
    size_t start, len;      /* bytes of the mapped piece */
    int prev, next;
} symbol;

typedef struct {
    int rank;
    int left;               /* symbol index; also the position tie-break (symbols are in order) */
    size_t left_len, right_len;  /* lengths when queued: a later merge makes the entry stale */
} candidate;

typedef struct {
    candidate *a;
    size_t n, cap;
} heap;

static int before(const candidate *x, const candidate *y) {
    return x->rank < y->rank || (x->rank == y->rank && x->left < y->left);
}

static int heap_push(heap *h, candidate c) {
    if (h->n == h->cap) {
        size_t cap = h->cap ? 2 * h->cap : 64;
        candidate *a = realloc(h->a, cap * sizeof *a);
        if (!a) return -1;
        h->a = a;
        h->cap = cap;
    }
    size_t i = h->n++;
    while (i > 0 && before(&c, &h->a[(i - 1) / 2])) {
        h->a[i] = h->a[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h->a[i] = c;
    return 0;
}

static candidate heap_pop(heap *h) {
    candidate top = h->a[0], last = h->a[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n) break;
        if (c + 1 < h->n && before(&h->a[c + 1], &h->a[c])) c++;
        if (!before(&h->a[c], &last)) break;
        h->a[i] = h->a[c];
        i = c;
    }
    if (h->n) h->a[i] = last;
    return top;
}

typedef struct {
    const lq_tokenizer *t;
    char *mapped;           /* the piece in the byte-level alphabet */
    symbol *sym;
    heap h;
    int **ids;
    size_t *n_ids, *cap_ids;
} encoder;

static lq_status push_id(encoder *e, int id) {
    if (*e->n_ids == *e->cap_ids) {
        size_t cap = *e->cap_ids ? 2 * *e->cap_ids : 64;
        int *ids = realloc(*e->ids, cap * sizeof *ids);
        if (!ids) return lq_fail(LQ_ERR_NOMEM, "BPE: out of memory for %zu token ids", cap);
        *e->ids = ids;
        *e->cap_ids = cap;
    }
    (*e->ids)[(*e->n_ids)++] = id;
    return LQ_OK;
}

static lq_status queue_pair(encoder *e, int left) {
    if (left < 0) return LQ_OK;
    int right = e->sym[left].next;
    if (right < 0) return LQ_OK;
    const symbol *l = &e->sym[left], *r = &e->sym[right];
    int rank = lq_tokenizer_merge_rank(e->t, e->mapped + l->start, l->len, e->mapped + r->start, r->len);
    if (rank < 0) return LQ_OK;
    candidate c = {rank, left, l->len, r->len};
    if (heap_push(&e->h, c) != 0) return lq_fail(LQ_ERR_NOMEM, "BPE: out of memory");
    return LQ_OK;
}

/* Emits the ids of one symbol's bytes [start, start+len) of e->mapped. */
static lq_status emit_symbol(encoder *e, size_t start, size_t len) {
    int id = lq_tokenizer_lookup(e->t, e->mapped + start, len);
    if (id >= 0) return push_id(e, id);
    /* not a token: one token per alphabet character (1 or 2 bytes each) */
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t cl = utf8_next((const unsigned char *)e->mapped + start + i, len - i, &cp);
        id = lq_tokenizer_lookup(e->t, e->mapped + start + i, cl);
        if (id < 0) id = e->t->unk_id;
        if (id < 0)
            return lq_fail(LQ_ERR_FORMAT, "BPE: the vocabulary has no token for byte 0x%02X "
                           "(alphabet character U+%04X) and no unknown token",
                           (unsigned)cp_to_byte(cp), (unsigned)cp);
        lq_status st = push_id(e, id);
        if (st) return st;
        i += cl;
    }
    return LQ_OK;
}

static lq_status encode_piece(encoder *e, const unsigned char *bytes, size_t len, int whole_first) {
    size_t m = 0;
    for (size_t i = 0; i < len; i++) {
        size_t n = byte_utf8(bytes[i], e->mapped + m);
        e->sym[i].start = m;
        e->sym[i].len = n;
        e->sym[i].prev = (int)i - 1;
        e->sym[i].next = i + 1 < len ? (int)i + 1 : -1;
        m += n;
    }
    if (whole_first) {
        int id = lq_tokenizer_lookup(e->t, e->mapped, m);
        if (id >= 0) return push_id(e, id);
    }
    lq_status st;
    e->h.n = 0;
    for (size_t i = 0; i + 1 < len; i++)
        if ((st = queue_pair(e, (int)i))) return st;
    while (e->h.n > 0) {
        candidate c = heap_pop(&e->h);
        symbol *l = &e->sym[c.left];
        /* stale: the left symbol was absorbed (len 0) or either side has grown since */
        if (l->len != c.left_len || l->next < 0 || e->sym[l->next].len != c.right_len) continue;
        symbol *r = &e->sym[l->next];
        l->len += r->len;       /* symbols are contiguous in e->mapped */
        l->next = r->next;
        if (r->next >= 0) e->sym[r->next].prev = c.left;
        r->len = 0;
        if ((st = queue_pair(e, l->prev)) || (st = queue_pair(e, c.left))) return st;
    }
    for (int i = 0; i >= 0; i = e->sym[i].next)
        if ((st = emit_symbol(e, e->sym[i].start, e->sym[i].len))) return st;
    return LQ_OK;
}

lq_status lq_bpe_encode(const lq_tokenizer *t, const char *text, size_t len, int **ids,
                        size_t *n_ids, size_t *cap_ids) {
    if (len == 0) return LQ_OK;
    pre_kind kind = pre_lookup(t->pre);
    if (kind == PRE_UNKNOWN)
        return lq_fail(LQ_ERR_UNSUPPORTED, "BPE: pre-tokenizer '%s' is not supported (supported: "
                       "%s)", t->pre, lq_bpe_pre_list());
    lq_status st = LQ_OK;
    const unsigned char *s = (const unsigned char *)text;
    cps c = {0};
    encoder e = {.t = t, .ids = ids, .n_ids = n_ids, .cap_ids = cap_ids};
    if (len > SIZE_MAX / 16) return lq_fail(LQ_ERR_RANGE, "BPE: text of %zu bytes is too long", len);
    c.cp = malloc(len * sizeof *c.cp);
    c.cls = malloc(len);
    c.off = malloc((len + 1) * sizeof *c.off);
    e.mapped = malloc(2 * len);
    e.sym = malloc(len * sizeof *e.sym);
    if (!c.cp || !c.cls || !c.off || !e.mapped || !e.sym) {
        st = lq_fail(LQ_ERR_NOMEM, "BPE: out of memory for %zu bytes of text", len);
        goto done;
    }
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t n = utf8_next(s + i, len - i, &cp);
        c.cp[c.n] = cp;
        c.cls[c.n] = (unsigned char)(cp == 0xFFFFFFFFu ? CLASS_OTHER : classify(cp));
        c.off[c.n++] = i;
        i += n;
    }
    c.off[c.n] = len;
    for (size_t i = 0; i < c.n && !st;) {
        size_t n, end = c.n;
        if (kind == PRE_SMOLLM) {
            /* digits stand alone; the gpt2 pattern runs on the stretch up to the next digit */
            if (c.cls[i] == CLASS_NUMBER) {
                n = 1;
            } else {
                end = i;
                while (end < c.n && c.cls[end] != CLASS_NUMBER) end++;
                n = match_gpt2(&c, i, end);
            }
        } else if (kind == PRE_LLAMA3) {
            n = match_llama3(&c, i, end, 3);
        } else if (kind == PRE_QWEN2) {
            n = match_llama3(&c, i, end, 1);
        } else {
            n = match_gpt2(&c, i, end);
        }
        st = encode_piece(&e, s + c.off[i], c.off[i + n] - c.off[i], kind == PRE_LLAMA3);
        i += n;
    }
done:
    free(c.cp);
    free(c.cls);
    free(c.off);
    free(e.mapped);
    free(e.sym);
    free(e.h.a);
    return st;
}

int lq_bpe_decode(const lq_tokenizer *t, int id, char *buf, size_t cap) {
    if (id < 0 || id >= t->n_tokens) return -1;
    const unsigned char *s = (const unsigned char *)t->tokens[id];
    size_t len = t->token_len[id], w = 0;
    /* alphabet characters become their bytes; anything else (added tokens written as plain
     * text, e.g. with real spaces) is copied as it is */
    for (size_t i = 0; i < len && w < cap;) {
        uint32_t cp;
        size_t n = utf8_next(s + i, len - i, &cp);
        int b = cp == 0xFFFFFFFFu ? -1 : cp_to_byte(cp);
        if (b >= 0) {
            buf[w++] = (char)b;
        } else {
            for (size_t k = 0; k < n && w < cap; k++) buf[w++] = (char)s[i + k];
        }
        i += n;
    }
    return (int)w;
}
