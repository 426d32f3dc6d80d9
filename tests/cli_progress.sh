#!/usr/bin/env bash
# Progress over ZeroMQ (issue 6): lq-calibrate --progress publishes schemas/progress.json events,
# lq-watch receives them. Checks: every event a watcher sees is valid against the schema; each
# result of the job arrives once with done = 1..total; stages come in order and the last event
# is "done" with the real size of model.safetensors; a failing job ends with a "failed" event
# carrying its error and lq-watch exits 1; a terminal gets a bar, a log gets one line per result;
# endpoints beyond loopback are refused unless asked for; a port in use is a clear error;
# lq-watch's own flags and its timeout.
# Usage: cli_progress.sh LQ_CALIBRATE LQ_WATCH SHARED_DATA_DIR SCHEMA_JSON
set -u
calibrate="$1"
watch="$2"
data="$3"
schema="$4"
model="$data/llama2c-stories260K/stories260K.bin"
tok="$data/llama2c-stories260K/tok512.bin"
text="$data/tinystories/tinystories_val_a.txt"
tmp="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$tmp"' EXIT
source "$(dirname "$0")/cli_lib.sh"
mpi_test_env
export LQ_TEST_TIMEOUT_LOG="$tmp/timeouts.log"

tail -c +100001 "$text" > "$tmp/calib.txt"
common=(--model "$model" --tokenizer "$tok" --calib "$tmp/calib.txt" --nsamples 4 --seqlen 64
        --steps 4 --configs 16/8,24/10 --ctx 256)

# checks a JSON-lines file of events against the schema (the subset of JSON Schema it uses:
# required, const, enum, type, minimum, pattern, additionalProperties false) and the job's story
check_events() {
    python3 - "$schema" "$1" "$2" "$3" <<'EOF'
import json, os, re, sys
schema = json.load(open(sys.argv[1]))
lines = [l for l in open(sys.argv[2]) if l.strip()]
want_last, out = sys.argv[3], sys.argv[4]
props = schema["properties"]
types = {"integer": int, "number": (int, float), "string": str, "null": type(None)}
problems = []
events = []
for n, line in enumerate(lines, 1):
    e = json.loads(line)
    for k in schema["required"]:
        if k not in e: problems.append(f"event {n}: no {k}")
    for k, v in e.items():
        p = props.get(k)
        if p is None: problems.append(f"event {n}: unknown key {k}"); continue
        if "const" in p and v != p["const"]: problems.append(f"event {n}: {k}={v}")
        if "enum" in p and v not in p["enum"]: problems.append(f"event {n}: {k}={v}")
        if "type" in p:
            ts = p["type"] if isinstance(p["type"], list) else [p["type"]]
            if not any(isinstance(v, types[t]) and not isinstance(v, bool) for t in ts):
                problems.append(f"event {n}: {k}={v!r} is not {ts}")
        if "minimum" in p and isinstance(v, (int, float)) and v < p["minimum"]:
            problems.append(f"event {n}: {k}={v} < {p['minimum']}")
        if "pattern" in p and not re.search(p["pattern"], v): problems.append(f"event {n}: {k}={v}")
    events.append(e)
order = ["prepare", "measure", "solve", "assemble", "eval", "done", "failed"]
stages = [order.index(e["stage"]) for e in events]
if stages != sorted(stages): problems.append(f"stages out of order: {[e['stage'] for e in events]}")
seqs = [e["seq"] for e in events]
if seqs != sorted(set(seqs)): problems.append(f"seq not increasing: {seqs}")
if not events or events[-1]["stage"] != want_last:
    problems.append(f"last event is not {want_last}: {events[-1] if events else None}")
results = [e for e in events if e["stage"] == "measure" and "tensor" in e]
if want_last == "done":
    total = results[0]["total"] if results else -1
    if [e["done"] for e in results] != list(range(1, total + 1)):
        problems.append(f"results seen: {[e['done'] for e in results]} of {total}")
    for e in results:
        for k in ("layer", "config", "error", "bytes", "seconds", "host", "eta_s"):
            if k not in e: problems.append(f"result {e['done']}: no {k}")
    last = events[-1]
    size = os.path.getsize(os.path.join(out, "model.safetensors"))
    if last.get("bytes") != size or last.get("out") != out:
        problems.append(f"done event {last} but model.safetensors has {size} bytes")
    print(f"{len(events)} events, {len(results)} results of {total}")
else:
    print(f"{len(events)} events, failed with: {events[-1].get('message')}")
for p in problems[:20]: print("PROBLEM:", p)
sys.exit(1 if problems else 0)
EOF
}

# ---- a whole job, watched: -n 2 over ipc, the watcher started first -------------------------
ep="ipc://$tmp/progress.sock"
"$watch" --json --timeout 120 "$ep" > "$tmp/w1.jsonl" 2>"$tmp/w1.err" &
watcher=$!
mpi_timed 2 "$calibrate" "${common[@]}" --target-bits 4 --db "$tmp/s/store.db" \
    --out "$tmp/o1" --progress "$ep" >"$tmp/c1.out" 2>"$tmp/c1.err" || fail "job 1: $(tail -5 "$tmp/c1.err")"
wait "$watcher"; rc=$?
[ "$rc" -eq 0 ] || fail "lq-watch should exit 0 after done, got $rc: $(cat "$tmp/w1.err")"
check_events "$tmp/w1.jsonl" done "$tmp/o1" || fail "events of job 1 (above)"
# the log (stderr is not a terminal): one line per result, then the stages
lines="$(grep -c '^lq-calibrate: \[[0-9]*/70\] model.layers' "$tmp/c1.err")"
[ "$lines" = 70 ] || fail "stderr should have 70 result lines, has $lines: $(head -5 "$tmp/c1.err")"
grep -q "^lq-calibrate: done: $tmp/o1 (model.safetensors" "$tmp/c1.err" || fail "no done line: $(tail -3 "$tmp/c1.err")"

# ---- a late watcher sees the state at once: the finished job re-solves a new budget ---------
# (no measuring, so the events are prepare, solve, assemble, done)
port=$((20000 + RANDOM % 20000))
"$watch" --timeout 120 "tcp://127.0.0.1:$port" > "$tmp/w2.txt" 2>"$tmp/w2.err" &
watcher=$!
mpi_timed 2 "$calibrate" "${common[@]}" --target-bits 3.5 --db "$tmp/s/store.db" \
    --out "$tmp/o2" --progress "tcp://127.0.0.1:$port" >"$tmp/c2.out" 2>"$tmp/c2.err" ||
    fail "job 2: $(tail -5 "$tmp/c2.err")"
wait "$watcher" || fail "lq-watch after job 2: $(cat "$tmp/w2.err")"
grep -q "^lq-calibrate: done: $tmp/o2" "$tmp/w2.txt" || fail "watcher's view of job 2: $(cat "$tmp/w2.txt")"
grep -q "every result is measured already" "$tmp/c2.err" || fail "job 2 measured again: $(cat "$tmp/c2.err")"

# ---- a failing job: an infeasible budget ends with a "failed" event and lq-watch exits 1 ----
"$watch" --json --timeout 120 "$ep" > "$tmp/w3.jsonl" 2>"$tmp/w3.err" &
watcher=$!
mpi_timed 2 "$calibrate" "${common[@]}" --budget 1KiB --db "$tmp/s/store.db" \
    --out "$tmp/o3" --progress "$ep" >/dev/null 2>"$tmp/c3.err" && fail "an infeasible budget succeeded"
wait "$watcher"; rc=$?
[ "$rc" -eq 1 ] || fail "lq-watch should exit 1 after failed, got $rc"
check_events "$tmp/w3.jsonl" failed - || fail "events of job 3 (above)"
grep -q '"stage":"failed".*smallest feasible budget' "$tmp/w3.jsonl" || fail "failed event: $(tail -1 "$tmp/w3.jsonl")"
grep -q "^lq-calibrate: failed after .*smallest feasible budget" "$tmp/c3.err" || fail "stderr of job 3: $(cat "$tmp/c3.err")"

# ---- a terminal gets the bar: run alone (an MPI singleton) under script(1), which gives it a
# pty; under mpirun stderr is Open MPI's pipe, where --bar on asks for the bar
script -qec "'$calibrate' ${common[*]} --configs 24/10 --seed 7 --target-bits 4 \
    --db '$tmp/s/store.db' --out '$tmp/o4'" /dev/null > "$tmp/tty.txt" 2>&1 ||
    fail "job 4 on a pty: $(tail -c 2000 "$tmp/tty.txt")"
grep -q $'\r''lq-calibrate: \[#*\.*\] [0-9]*/35 results' "$tmp/tty.txt" || fail "no bar on a terminal"
grep -q '\[##############################\] 35/35 results (100%)' "$tmp/tty.txt" || fail "the bar does not end full"
grep -q '^lq-calibrate: \[[0-9]*/35\]' "$tmp/tty.txt" && fail "a terminal got log lines instead of the bar"
mpi_timed 2 "$calibrate" "${common[@]}" --configs 24/10 --seed 8 --target-bits 4 \
    --db "$tmp/s/store.db" --out "$tmp/o6" --bar on > /dev/null 2>"$tmp/bar.txt" || fail "--bar on: $(tail -3 "$tmp/bar.txt")"
grep -q '\[##############################\] 35/35 results (100%)' "$tmp/bar.txt" || fail "--bar on under mpirun"
expect "$calibrate" 2 "--bar sometimes: expected auto, on or off" -- "${common[@]}" --target-bits 4 --out "$tmp/x" --bar sometimes

# ---- endpoints ------------------------------------------------------------------------------
expect "$calibrate" 2 "not a loopback address" -- "${common[@]}" --target-bits 4 --out "$tmp/x" --progress "tcp://0.0.0.0:5557"
expect "$calibrate" 2 "not a loopback address" -- "${common[@]}" --target-bits 4 --out "$tmp/x" --progress "tcp://10.1.2.3:5557"
expect "$calibrate" 2 "expected tcp://HOST:PORT or ipc://PATH" -- "${common[@]}" --target-bits 4 --out "$tmp/x" --progress "udp://127.0.0.1:5"
expect "$calibrate" 2 "--progress needs a value" -- "${common[@]}" --target-bits 4 --out "$tmp/x" --progress
# a port someone else holds: the job stops before any work, naming the endpoint
port=$((20000 + RANDOM % 20000))
python3 -c "import socket,time,sys; s=socket.socket(); s.bind(('127.0.0.1',$port)); s.listen(); time.sleep(60)" &
holder=$!
sleep 0.5
mpi_timed 1 "$calibrate" "${common[@]}" --target-bits 4 --db "$tmp/s/store.db" \
    --out "$tmp/o5" --progress "tcp://127.0.0.1:$port" >/dev/null 2>"$tmp/c5.err" && fail "a port in use was accepted"
grep -q -- "--progress tcp://127.0.0.1:$port: Address already in use" "$tmp/c5.err" || fail "port in use: $(cat "$tmp/c5.err")"
[ -e "$tmp/o5" ] && fail "OUT written although progress could not start"
kill "$holder" 2>/dev/null

# ---- lq-watch itself ------------------------------------------------------------------------
"$watch" --help | grep -q "usage: lq-watch" || fail "lq-watch --help"
expect "$watch" 2 "an ENDPOINT is required" --
expect "$watch" 2 "unknown argument '--bogus'" -- --bogus "$ep"
expect "$watch" 2 "expected tcp://HOST:PORT or ipc://PATH" -- "http://x"
expect "$watch" 2 "--timeout: 'abc' is not a number" -- --timeout abc "$ep"
expect "$watch" 3 "no event from ipc://$tmp/none.sock in 1 s" -- --timeout 1 "ipc://$tmp/none.sock"

[ -s "$tmp/timeouts.log" ] && fail "steps over the time limit: $(cat "$tmp/timeouts.log")"
finish cli_progress
