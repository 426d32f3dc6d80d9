#!/usr/bin/env bash
# Decode speed of several (lq-run binary, model) pairs side by side: the runs are interleaved,
# ROUNDS times each, so a change in the machine's load hits every pair alike. Prints each run's
# decode tokens/s, the median per pair and its ratio to the first pair's median.
#
#   bench/decode_bench.sh ROUNDS LABEL=LQ_RUN:MODEL [LABEL=LQ_RUN:MODEL ...]
#
# Every run: the same prompt, NEW tokens (default 128) sampled at temperature 1 with top-p 1 and
# seed SEED (default 3) — sampling rather than greedy so that a quantized model that would
# stop early at end-of-text greedily still decodes a long stretch (the count is printed).
# Threads: LQ_THREADS (default the runtime's, min(cores, 2)).
set -euo pipefail
rounds="${1:?usage: decode_bench.sh ROUNDS LABEL=LQ_RUN:MODEL ...}"
shift
[ $# -ge 1 ] || { echo "decode_bench.sh: name at least one LABEL=LQ_RUN:MODEL" >&2; exit 2; }
prompt="The history of the city"
new="${NEW:-128}"
seed="${SEED:-3}"
labels=() bins=() models=()
for spec in "$@"; do
    label="${spec%%=*}" rest="${spec#*=}"
    bin="${rest%%:*}" model="${rest#*:}"
    [ "$label" != "$spec" ] && [ "$bin" != "$rest" ] || { echo "decode_bench.sh: '$spec' is not LABEL=LQ_RUN:MODEL" >&2; exit 2; }
    [ -x "$bin" ] || { echo "decode_bench.sh: $bin is not an executable" >&2; exit 2; }
    [ -e "$model" ] || { echo "decode_bench.sh: model $model does not exist" >&2; exit 2; }
    labels+=("$label") bins+=("$bin") models+=("$model")
done
echo "# $(date -u +%FT%TZ), $(nproc) cores, LQ_THREADS=${LQ_THREADS:-default}; prompt \"$prompt\", $new tokens, --temp 1 --top-p 1 --seed $seed"
declare -A speeds
for ((r = 1; r <= rounds; r++)); do
    for i in "${!labels[@]}"; do
        line="$("${bins[$i]}" --model "${models[$i]}" --prompt "$prompt" -n "$new" --temp 1 --top-p 1 --seed "$seed" 2>&1 >/dev/null | grep 'generated')"
        # "lq-run: prefill … ; generated N tokens in X s (Y tokens/s)"
        tps="$(sed -E 's/.*generated ([0-9]+) tokens in [0-9.]+ s \(([0-9.]+) tokens\/s\).*/\2/' <<<"$line")"
        ntok="$(sed -E 's/.*generated ([0-9]+) tokens.*/\1/' <<<"$line")"
        echo "round $r ${labels[$i]}: $tps tokens/s ($ntok tokens)"
        speeds[$i]="${speeds[$i]:-} $tps"
    done
done
echo "| model | decode tokens/s, median of $rounds | vs ${labels[0]} |"
echo "|---|---|---|"
base=""
for i in "${!labels[@]}"; do
    med="$(tr ' ' '\n' <<<"${speeds[$i]}" | grep . | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}')"
    [ -n "$base" ] || base="$med"
    echo "| ${labels[$i]} | $med | $(awk -v a="$med" -v b="$base" 'BEGIN {printf "%.2f×", a / b}') |"
done
