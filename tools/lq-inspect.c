/* lq-inspect: what a quantized model directory holds, module by module, and what it costs.
 *
 *   lq-inspect DIR [--json]
 *
 * Per decoder-layer linear: name, method, config (D/d for LiftQuant, wBgG for GPTQ/RTN),
 * OC × IC, bytes of codes and of side data (scales, zeros, whitening parameters, perm; bias
 * excluded) as stored, and bits per weight including side data. Then the totals: weights of
 * the decoder linears, their bits per weight for codes only and with side data (the lattices,
 * stored once per config, counted as side data), unquantized tensor bytes (embeddings, norms,
 * head, biases) and the size of model.safetensors. Reads only config.json and the safetensors
 * header (lq_quantized_inspect), so it is instant on any model size. */
#include "lq_quant.h"

#include <stdio.h>
#include <string.h>

static void usage(FILE *out) {
    fprintf(out,
            "usage: lq-inspect DIR [--json]\n"
            "\n"
            "Lists every quantized module of a liftquant output directory (method, config,\n"
            "shape, code and side-data bytes, bits per weight) and the totals.\n"
            "  --json   one JSON object on stdout instead of the table\n");
}

static double bits_per_weight(size_t bytes, size_t weights) {
    return weights ? 8.0 * (double)bytes / (double)weights : 0.0;
}

static void json_string_out(const char *s) {
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') printf("\\%c", *s);
        else if ((unsigned char)*s < 0x20) printf("\\u%04x", (unsigned char)*s);
        else putchar(*s);
    }
    putchar('"');
}

int main(int argc, char **argv) {
    const char *dir = NULL;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "lq-inspect: unknown option '%s' (see --help)\n", a);
            return 2;
        } else if (dir) {
            fprintf(stderr, "lq-inspect: one directory at a time ('%s' and '%s' given)\n", dir, a);
            return 2;
        } else {
            dir = a;
        }
    }
    if (!dir) {
        fprintf(stderr, "lq-inspect: no directory given\n");
        usage(stderr);
        return 2;
    }
    lq_quantized_info info;
    if (lq_quantized_inspect(dir, &info) != LQ_OK) {
        fprintf(stderr, "lq-inspect: %s\n", lq_last_error());
        return 1;
    }
    size_t weights = 0, code = 0, side = 0;
    for (size_t i = 0; i < info.n_modules; i++) {
        const lq_module_info *mi = &info.modules[i];
        weights += (size_t)mi->out_features * (size_t)mi->in_features;
        code += mi->code_bytes;
        side += mi->side_bytes;
    }
    side += info.lattice_bytes;
    if (json) {
        printf("{\"modules\": [");
        for (size_t i = 0; i < info.n_modules; i++) {
            const lq_module_info *mi = &info.modules[i];
            printf("%s\n  {\"name\": ", i ? "," : "");
            json_string_out(mi->name);
            printf(", \"method\": ");
            json_string_out(mi->method);
            printf(", \"config\": ");
            json_string_out(mi->config);
            printf(", \"out_features\": %d, \"in_features\": %d, \"code_bytes\": %zu, "
                   "\"side_bytes\": %zu, \"bits_per_weight\": %.6f}",
                   mi->out_features, mi->in_features, mi->code_bytes, mi->side_bytes,
                   bits_per_weight(mi->code_bytes + mi->side_bytes,
                                   (size_t)mi->out_features * (size_t)mi->in_features));
        }
        printf("],\n \"totals\": {\"decoder_linear_weights\": %zu, \"code_bytes\": %zu, "
               "\"side_bytes\": %zu, \"lattice_bytes\": %zu, \"bits_per_weight_codes\": %.6f, "
               "\"bits_per_weight_with_side\": %.6f, \"unquantized_bytes\": %zu, "
               "\"file_bytes\": %zu}}\n",
               weights, code, side, info.lattice_bytes, bits_per_weight(code, weights),
               bits_per_weight(code + side, weights), info.unquantized_bytes, info.file_bytes);
    } else {
        printf("%-40s %-9s %-12s %13s %12s %12s %8s\n", "module", "method", "config", "OC x IC",
               "code bytes", "side bytes", "bits/w");
        for (size_t i = 0; i < info.n_modules; i++) {
            const lq_module_info *mi = &info.modules[i];
            char shape[32];
            snprintf(shape, sizeof shape, "%dx%d", mi->out_features, mi->in_features);
            printf("%-40s %-9s %-12s %13s %12zu %12zu %8.3f\n", mi->name, mi->method, mi->config,
                   shape, mi->code_bytes, mi->side_bytes,
                   bits_per_weight(mi->code_bytes + mi->side_bytes,
                                   (size_t)mi->out_features * (size_t)mi->in_features));
        }
        printf("\ndecoder-linear weights   %zu in %zu modules\n", weights, info.n_modules);
        printf("bits per weight          %.4f codes only, %.4f with side data (side %zu bytes, "
               "of which lattices %zu)\n",
               bits_per_weight(code, weights), bits_per_weight(code + side, weights), side,
               info.lattice_bytes);
        printf("unquantized tensors      %zu bytes (embeddings, norms, head, biases)\n",
               info.unquantized_bytes);
        printf("model.safetensors        %zu bytes\n", info.file_bytes);
    }
    lq_quantized_info_free(&info);
    return 0;
}
