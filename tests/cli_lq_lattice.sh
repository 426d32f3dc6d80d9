#!/usr/bin/env bash
# lq-lattice's command line: bad input gets a clear message and a non-zero exit, never a
# crash; a small train → info → bench round trip works. Usage: cli_lq_lattice.sh LQ_LATTICE
set -u
tool="$1"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
failures=0

# expect STATUS PATTERN -- ARGS: the exit status and a pattern the stderr must contain
expect() {
    local want="$1" pattern="$2"
    shift 3
    local err
    err="$("$tool" "$@" 2>&1 >/dev/null)"
    local got=$?
    if [ "$got" -ne "$want" ] || ! grep -qF -- "$pattern" <<<"$err"; then
        echo "FAIL: lq-lattice $* -> status $got (want $want), stderr: $err"
        failures=$((failures + 1))
    fi
}

expect 2 "usage:" --
expect 2 "unknown command 'frobnicate'" -- frobnicate
expect 2 "config '24x10': expected D/d" -- train 24x10
expect 2 "need 1 <= d <= 32 and d < D" -- train 8/8
expect 2 "--seed: 'abc' is not an integer" -- train 8/4 --seed abc
expect 2 "unknown option '--bogus'" -- train 8/4 --bogus
expect 2 "--encoders: unknown encoder 'fast'" -- bench --encoders fast
expect 2 "--configs: config '16/8/2'" -- bench --configs 16/8/2
expect 1 "$tmp/12to6.safetensors" -- bench --configs 12/6 --lattices "$tmp"
expect 1 "lq-lattice train 12/6" -- bench --configs 12/6 --lattices "$tmp"
printf 'not a lattice' >"$tmp/bad.safetensors"
expect 1 "bad.safetensors" -- info "$tmp/bad.safetensors"
expect 1 "cannot create" -- train 8/4 --steps 2 --restarts 1 --lloyd 1 --quiet --out /nonexistent/dir/x.safetensors

# round trip: train a tiny lattice, read it back, benchmark it as JSON
if ! "$tool" train 12/6 --seed 3 --steps 20 --restarts 1 --lloyd 2 --lloyd-samples 2000 \
        --eval-vectors 2000 --quiet --out "$tmp/12to6.safetensors" >"$tmp/train.out"; then
    echo "FAIL: train 12/6"; failures=$((failures + 1))
fi
grep -q "12/6: mse" "$tmp/train.out" || { echo "FAIL: train output: $(cat "$tmp/train.out")"; failures=$((failures + 1)); }
"$tool" info "$tmp/12to6.safetensors" | grep -q "12/6 (2.000 bits per weight), seed 3" ||
    { echo "FAIL: info"; failures=$((failures + 1)); }
json="$("$tool" bench --configs 12/6 --lattices "$tmp" --vectors 500 --json)"
lines="$(grep -c '"config": "12/6"' <<<"$json")"
if [ "$lines" -ne 2 ] || ! grep -q '"encoder": "exact"' <<<"$json" || ! grep -q '"seconds_per_mweights"' <<<"$json"; then
    echo "FAIL: bench --json: $json"; failures=$((failures + 1))
fi

if [ "$failures" -ne 0 ]; then
    echo "$failures failure(s)"
    exit 1
fi
echo "cli_lq_lattice: all checks passed"
