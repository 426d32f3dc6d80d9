#!/usr/bin/env bash
# lq-lattice's command line: bad input gets a clear message and a non-zero exit, never a
# crash; a small train → info → bench round trip works. Usage: cli_lq_lattice.sh LQ_LATTICE
set -u
tool="$1"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
source "$(dirname "$0")/cli_lib.sh"

expect "$tool" 2 "usage:" --
expect "$tool" 2 "unknown command 'frobnicate'" -- frobnicate
expect "$tool" 2 "config '24x10': expected D/d" -- train 24x10
expect "$tool" 2 "need 1 <= d <= 32 and d < D" -- train 8/8
expect "$tool" 2 "--seed: 'abc' is not an integer" -- train 8/4 --seed abc
expect "$tool" 2 "unknown option '--bogus'" -- train 8/4 --bogus
expect "$tool" 2 "--encoders: unknown encoder 'fast'" -- bench --encoders fast
expect "$tool" 2 "--configs: config '16/8/2'" -- bench --configs 16/8/2
expect "$tool" 1 "$tmp/12to6.safetensors" -- bench --configs 12/6 --lattices "$tmp"
expect "$tool" 1 "lq-lattice train 12/6" -- bench --configs 12/6 --lattices "$tmp"
printf 'not a lattice' >"$tmp/bad.safetensors"
expect "$tool" 1 "bad.safetensors" -- info "$tmp/bad.safetensors"
expect "$tool" 1 "cannot create" -- train 8/4 --steps 2 --restarts 1 --lloyd 1 --quiet --out /nonexistent/dir/x.safetensors

# round trip: train a tiny lattice, read it back, benchmark it as JSON
if ! "$tool" train 12/6 --seed 3 --steps 20 --restarts 1 --lloyd 2 --lloyd-samples 2000 \
        --eval-vectors 2000 --quiet --out "$tmp/12to6.safetensors" >"$tmp/train.out"; then
    fail "train 12/6"
fi
grep -q "12/6: mse" "$tmp/train.out" || fail "train output: $(cat "$tmp/train.out")"
"$tool" info "$tmp/12to6.safetensors" | grep -q "12/6 (2.000 bits per weight), seed 3" ||
    { fail "info"; }
json="$("$tool" bench --configs 12/6 --lattices "$tmp" --vectors 500 --json)"
lines="$(grep -c '"config": "12/6"' <<<"$json")"
if [ "$lines" -ne 2 ] || ! grep -q '"encoder": "exact"' <<<"$json" || ! grep -q '"seconds_per_mweights"' <<<"$json"; then
    fail "bench --json: $json"
fi

finish cli_lq_lattice
