#!/usr/bin/env bash
# lq-calibrate under mpirun on localhost, end to end on stories260K (issue 5's tests):
# the output fits its budget and loads; -n 1, 2 and 4 give identical bytes; a run killed midway
# resumes and ends with the same bytes; a new budget on a finished run re-solves without
# measuring; an infeasible budget names the smallest feasible one; budget units; a corrupted
# blob is found by its checksum and measured again; a truncated checkpoint and an unwritable
# OUT are clear errors; two runs write one store at the same time; with one config for every linear the output
# equals lq-quantize's (--propagate fp) byte for byte.
# Usage: cli_calibrate.sh LQ_CALIBRATE LQ_QUANTIZE LQ_EVAL SHARED_DATA_DIR
set -u
calibrate="$1"
quantize="$2"
eval_tool="$3"
data="$4"
model="$data/llama2c-stories260K/stories260K.bin"
tok="$data/llama2c-stories260K/tok512.bin"
text="$data/tinystories/tinystories_val_a.txt"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
source "$(dirname "$0")/cli_lib.sh"
mpi_test_env
export LQ_TEST_TIMEOUT_LOG="$tmp/timeouts.log"

tail -c +100001 "$text" > "$tmp/calib.txt"
head -c 20000 "$text" > "$tmp/eval.txt"
common=(--model "$model" --tokenizer "$tok" --calib "$tmp/calib.txt" --nsamples 8 --seqlen 128
        --steps 10 --configs 16/8,24/10,24/8 --ctx 256)

cal() { mpi_timed "$@"; }
run1() { mpi_timed 1 "$calibrate" "$@"; }
same_dir() { for f in config.json model.safetensors tokenizer.liftquant.json; do
    cmp -s "$1/$f" "$2/$f" || { fail "$3: $f differs between $1 and $2"; return; }; done; }
measured() { grep -o '[0-9]* results to measure' "$1" | cut -d' ' -f1; }

# ---- -n 1: the reference run -------------------------------------------------------------
# the budget: a uniform 4 bits per weight (side data is large on 64-wide matrices) for the linears plus what else the file holds
cal 1 "$calibrate" "${common[@]}" --target-bits 4 --db "$tmp/s1/store.db" --out "$tmp/n1" \
    >"$tmp/n1.out" 2>"$tmp/n1.err" || fail "-n 1: $(tail -5 "$tmp/n1.err")"
[ "$(measured "$tmp/n1.err")" = 105 ] || fail "-n 1 should measure 35 linears x 3 configs: $(grep results "$tmp/n1.err")"
grep -q "configs chosen: 16/8×[0-9]* 24/10×[0-9]* 24/8×[0-9]*" "$tmp/n1.out" || fail "no report: $(cat "$tmp/n1.out")"
bpw="$(sed -n 's/^quantized linears: .*, \([0-9.]*\) bits per weight.*/\1/p' "$tmp/n1.out")"
python3 -c "import sys; sys.exit(0 if 3.5 < $bpw <= 4 else 1)" ||
    fail "--target-bits 4 gave $bpw bits per weight"
# a mixed assignment: not every linear at one config
[ "$(grep -c ' 24/10 \| 16/8 \| 24/8 ' "$tmp/n1.out")" -eq 35 ] || fail "report lines"
"$eval_tool" ppl --model "$tmp/n1" --text "$tmp/eval.txt" --ctx 256 >/dev/null 2>&1 ||
    fail "lq-eval cannot load the output"

# ---- -n 2, 4 and 8: the same bytes (8: seven workers for five layers, two of them idle) -----
for n in 2 4 8; do
    cal "$n" "$calibrate" "${common[@]}" --target-bits 4 --db "$tmp/s$n/store.db" --out "$tmp/n$n" \
        >"$tmp/n$n.out" 2>"$tmp/n$n.err" || fail "-n $n: $(tail -5 "$tmp/n$n.err")"
    same_dir "$tmp/n1" "$tmp/n$n" "-n $n"
done

# ---- a budget in bytes, and a new budget on a finished run: no measuring --------------------
size() { python3 -c "import json; print(json.load(open('$1/config.json'))['quantization_config']['budget']['$2'])"; }
fbytes() { stat -c %s "$1/model.safetensors"; }
kv="$(size "$tmp/n1" kv_cache_bytes)"
# the size accounting bounds the safetensors header from above, so allow the 4-bit file some room
budget=$(( $(fbytes "$tmp/n1") + kv + 40000 ))
cal 1 "$calibrate" "${common[@]}" --budget "$budget" --db "$tmp/s1/store.db" --out "$tmp/b1" \
    >"$tmp/b1.out" 2>"$tmp/b1.err" || fail "--budget $budget: $(tail -3 "$tmp/b1.err")"
grep -q "results to measure" "$tmp/b1.err" && fail "a finished run measured again: $(cat "$tmp/b1.err")"
# the held-out check reports what lq-eval measures of the written directory
cal 1 "$calibrate" "${common[@]}" --budget "$budget" --db "$tmp/s1/store.db" --out "$tmp/b1" \
    --eval-text "$tmp/eval.txt" --eval-ctx 256 >"$tmp/e1.out" 2>"$tmp/e1.err" || fail "--eval-text: $(tail -3 "$tmp/e1.err")"
own="$(sed -n 's/^perplexity on .*: \([0-9.]*\) (ctx 256.*/\1/p' "$tmp/e1.out")"
theirs="$("$eval_tool" ppl --model "$tmp/b1" --text "$tmp/eval.txt" --ctx 256 2>/dev/null | sed -n 's/^ppl \([0-9.]*\) .*/\1/p')"
[ -n "$own" ] && [ "$own" = "$theirs" ] || fail "--eval-text gave '$own', lq-eval '$theirs'"
expect run1 1 "--eval-text $tmp/nope.txt" -- "${common[@]}" --budget "$budget" --db "$tmp/s1/store.db" --out "$tmp/b1" --eval-text "$tmp/nope.txt"
[ $(( $(fbytes "$tmp/b1") + kv )) -le "$budget" ] || fail "output over its budget $budget"
# an infeasible budget names the smallest feasible one, and that one works
mpi_timed 1 "$calibrate" "${common[@]}" --budget 100KiB --db "$tmp/s1/store.db" --out "$tmp/x" \
    >/dev/null 2>"$tmp/inf.err" && fail "--budget 100KiB succeeded"
grep -q "smallest feasible budget is" "$tmp/inf.err" || fail "infeasible: $(cat "$tmp/inf.err")"
[ -e "$tmp/x" ] && fail "an infeasible budget left an output"
smallest="$(sed -n 's/.*smallest feasible budget is [^(]*(\([0-9]*\) B).*/\1/p' "$tmp/inf.err")"
cal 1 "$calibrate" "${common[@]}" --budget "$smallest" --db "$tmp/s1/store.db" --out "$tmp/b2" \
    >"$tmp/b2.out" 2>"$tmp/b2.err" || fail "--budget $smallest (the smallest feasible): $(tail -3 "$tmp/b2.err")"
[ $(( $(fbytes "$tmp/b2") + kv )) -le "$smallest" ] || fail "output over its budget $smallest"
[ "$(fbytes "$tmp/b2")" -lt "$(fbytes "$tmp/b1")" ] || fail "a smaller budget did not shrink the model"
grep -q "configs chosen: 16/8×35 24/10×0 24/8×0" "$tmp/b2.out" || fail "the smallest budget is not all 16/8"
expect run1 1 "smallest feasible budget is" -- "${common[@]}" --budget $((smallest - 1)) --db "$tmp/s1/store.db" --out "$tmp/x"
for pair in 1MiB:1048576 1.5MB:1500000 2000KiB:2048000 2000000B:2000000 3000KB:3000000 0.001GiB:1073741 0.002GB:2000000; do
    unit="${pair%%:*}"
    rm -rf "$tmp/u"
    cal 1 "$calibrate" "${common[@]}" --budget "$unit" --db "$tmp/s1/store.db" --out "$tmp/u" \
        >"$tmp/u.out" 2>"$tmp/u.err" || fail "--budget $unit: $(cat "$tmp/u.err")"
    [ "$(size "$tmp/u" budget_bytes)" = "${pair#*:}" ] || fail "--budget $unit is not ${pair#*:} bytes"
done

# ---- bad budgets and bad flags ------------------------------------------------------------
for bad in 12XB -1GiB GiB 1.5.5GB ""; do
    expect run1 1 "--budget" -- "${common[@]}" --budget "$bad" --db "$tmp/s1/store.db" --out "$tmp/x"
done
expect run1 2 "exactly one of --budget" -- "${common[@]}" --out "$tmp/x"
expect run1 2 "no lattice file" -- "${common[@]}" --configs 24/10,17/9 --target-bits 3 --out "$tmp/x"
expect run1 2 "--measure" -- "${common[@]}" --measure nonsense --target-bits 3 --out "$tmp/x"
expect run1 2 "--model and --out are required" -- --target-bits 3
expect run1 2 "unknown argument '--bogus'" -- "${common[@]}" --bogus --target-bits 3 --out "$tmp/x"
expect run1 2 "--configs: 24/10 is listed twice" -- "${common[@]}" --configs 24/10,16/8,24/10 --target-bits 3 --out "$tmp/x"
expect run1 2 "--configs: empty list" -- "${common[@]}" --configs , --target-bits 3 --out "$tmp/x"
expect run1 2 "--configs" -- "${common[@]}" --configs 24x10 --target-bits 3 --out "$tmp/x"
expect run1 2 "--encoder fast: expected exact or heuristic" -- "${common[@]}" --encoder fast --target-bits 3 --out "$tmp/x"
expect run1 2 "--target-bits: '0' is not a number" -- "${common[@]}" --target-bits 0 --out "$tmp/x"
expect run1 1 "--calib $tmp/nope.txt" -- "${common[@]}" --calib "$tmp/nope.txt" --target-bits 3 --db "$tmp/s1/store.db" --out "$tmp/x"
expect run1 1 "--target-bits 1 is infeasible: the smallest feasible is" -- "${common[@]}" --target-bits 1 --db "$tmp/s1/store.db" --out "$tmp/x"
expect run1 2 "--transport tcp: expected mpi or nccl" -- "${common[@]}" --transport tcp --target-bits 3 --out "$tmp/x"
# NCCL needs GPUs: without them (or without CUDA in the build) it is a clear error, not a hang
run3() { mpi_timed 3 "$calibrate" "$@"; }
expect run3 1 "--transport nccl" -- "${common[@]}" --transport nccl --target-bits 4 --db "$tmp/sn/store.db" --out "$tmp/x"
expect run1 1 "kv-dtype" -- "${common[@]}" --kv-dtype f12 --budget 1GiB --db "$tmp/s1/store.db" --out "$tmp/x"
"$calibrate" --help | grep -q -- "--budget SIZE" || fail "--help"

# ---- an unwritable OUT and a truncated checkpoint: errors before any work ------------------
touch "$tmp/a_file"
expect run1 1 "is not a directory" -- "${common[@]}" --target-bits 3 --out "$tmp/a_file/out"
head -c 300000 "$model" > "$tmp/truncated.bin"
expect run1 1 "truncated.bin" -- --model "$tmp/truncated.bin" --tokenizer "$tok" --calib "$tmp/calib.txt" \
    --target-bits 3 --db "$tmp/s9/store.db" --out "$tmp/x"

# ---- interrupted, then resumed: the same bytes ----------------------------------------------
LQ_CALIBRATE_STOP_AFTER=40 mpi_timed 2 "$calibrate" "${common[@]}" --target-bits 4 --db "$tmp/sr/store.db" \
    --out "$tmp/r" >/dev/null 2>"$tmp/r1.err" && fail "the stop hook did not stop the run"
[ -e "$tmp/r" ] && fail "an interrupted run left an output"
cal 4 "$calibrate" "${common[@]}" --target-bits 4 --db "$tmp/sr/store.db" --out "$tmp/r" \
    >/dev/null 2>"$tmp/r2.err" || fail "resume: $(tail -3 "$tmp/r2.err")"
[ "$(measured "$tmp/r2.err")" = 65 ] || fail "resume should measure the 65 results left: $(grep results "$tmp/r2.err")"
same_dir "$tmp/n1" "$tmp/r" "resumed run"

# ---- a corrupted blob: found, measured again, same bytes --------------------------------------
blob="$(ls "$tmp"/sr/blobs/run*/model.layers.2.mlp.up_proj.24x10.safetensors)"
printf 'garbage' | dd of="$blob" bs=1 seek=200 conv=notrunc status=none
cal 1 "$calibrate" "${common[@]}" --target-bits 4 --db "$tmp/sr/store.db" --out "$tmp/r" \
    >/dev/null 2>"$tmp/r3.err" || fail "after corruption: $(tail -3 "$tmp/r3.err")"
grep -q "fails its checksum" "$tmp/r3.err" || fail "corruption not reported: $(cat "$tmp/r3.err")"
[ "$(measured "$tmp/r3.err")" = 1 ] || fail "one result should be measured again: $(grep results "$tmp/r3.err")"
same_dir "$tmp/n1" "$tmp/r" "after re-measuring a corrupted blob"

# ---- two runs on one store, at the same time (SQLite's busy timeout serialises the writers) ----
cal 2 "$calibrate" "${common[@]}" --seed 7 --target-bits 4 --db "$tmp/s1/store.db" --out "$tmp/seed7" \
    >/dev/null 2>"$tmp/t7.err" &
seven=$!
cal 2 "$calibrate" "${common[@]}" --seed 8 --target-bits 4 --db "$tmp/s1/store.db" --out "$tmp/seed8" \
    >/dev/null 2>"$tmp/t8.err" || fail "a run beside another on one store: $(tail -3 "$tmp/t8.err")"
wait "$seven" || fail "a run beside another on one store: $(tail -3 "$tmp/t7.err")"
[ "$(measured "$tmp/t7.err")" = 105 ] || fail "a new seed is a new run: $(grep results "$tmp/t7.err")"
cmp -s "$tmp/seed7/model.safetensors" "$tmp/n1/model.safetensors" && fail "seed 7 gave seed 42's model"
cmp -s "$tmp/seed7/model.safetensors" "$tmp/seed8/model.safetensors" && fail "seeds 7 and 8 gave one model"
runs="$(sqlite3 "$tmp/s1/store.db" 'SELECT COUNT(*) FROM runs')"
[ "$runs" = 3 ] || fail "expected 3 runs in the store, found $runs"
per_run="$(sqlite3 "$tmp/s1/store.db" 'SELECT GROUP_CONCAT(n) FROM (SELECT COUNT(*) AS n FROM results GROUP BY run ORDER BY run)')"
[ "$per_run" = "105,105,105" ] || fail "results per run: $per_run"
# and the first run is still whole: a re-solve measures nothing
cal 1 "$calibrate" "${common[@]}" --target-bits 4 --db "$tmp/s1/store.db" --out "$tmp/again" \
    >/dev/null 2>"$tmp/again.err" || fail "re-solve after other runs: $(tail -3 "$tmp/again.err")"
grep -q "results to measure" "$tmp/again.err" && fail "run 1 measured again after runs 2 and 3"
same_dir "$tmp/n1" "$tmp/again" "run 1 after two more runs in its store"

# ---- one config everywhere = lq-quantize with --propagate fp ---------------------------------
cal 1 "$calibrate" "${common[@]}" --configs 24/10 --target-bits 16 --db "$tmp/s1/store.db" --out "$tmp/u24" \
    >/dev/null 2>"$tmp/u24.err" || fail "uniform 24/10: $(tail -3 "$tmp/u24.err")"
"$quantize" --model "$model" --tokenizer "$tok" --calib "$tmp/calib.txt" --nsamples 8 --seqlen 128 \
    --steps 10 --config 24/10 --propagate fp --out "$tmp/q24" >/dev/null 2>&1 || fail "lq-quantize 24/10"
cmp -s "$tmp/u24/model.safetensors" "$tmp/q24/model.safetensors" ||
    fail "lq-calibrate with one config differs from lq-quantize --propagate fp"

[ -s "$tmp/timeouts.log" ] && fail "steps over the time limit: $(cat "$tmp/timeouts.log")"
finish cli_calibrate
