#!/usr/bin/env bash
# The fleet service (issue 6): lqd and lq-fleet end to end on stories260K with the local
# launcher. A job runs to done and writes the same bytes as lq-calibrate run directly; status
# lists it; a queued and a running job are cancelled; lqd killed with -9 while three jobs wait
# is restarted and each job is launched exactly once in all (with the local launcher and with
# Slurm's, on a private single-node Slurm, where lqd also dies between sbatch and recording
# the job's id); 1,000 malformed requests each get a
# clear error and lqd still answers; with CurveZMQ, 1,000 clients with unknown keys or none are
# refused and a listed one is served, and SIGHUP re-reads the keys; a non-loopback endpoint
# without keys is refused at start; a manifest skips what is done and resubmits a model whose
# file changed.
# Usage: cli_fleet.sh LQD LQ_FLEET LQ_CALIBRATE SHARED_DATA_DIR
set -u
lqd="$1"
fleet="$2"
calibrate="$3"
data="$4"
model="$data/llama2c-stories260K/stories260K.bin"
tok="$data/llama2c-stories260K/tok512.bin"
text="$data/tinystories/tinystories_val_a.txt"
tmp="$(mktemp -d)"
daemons=()
cleanup() {
    for p in "${daemons[@]}"; do kill -9 "$p" 2>/dev/null; done
    # jobs run in their own sessions: stop any the test left behind (by the tag lqd gives them)
    for d in /proc/[0-9]*; do
        grep -qaz "^LQ_FLEET_JOB=$tmp/" "$d/environ" 2>/dev/null && kill -9 "${d#/proc/}" 2>/dev/null
    done
    [ -f "$tmp/slurm/slurm.conf" ] && bash "$(dirname "$0")/../cluster/slurm-local.sh" stop "$tmp/slurm" >/dev/null 2>&1
    rm -rf "$tmp"
}
trap cleanup EXIT
source "$(dirname "$0")/cli_lib.sh"
# the clients' own options: the 1,000-client loop would take minutes with slow unwinding
client_asan="${ASAN_OPTIONS:-}"
mpi_test_env
unset LQ_FLEET_ENDPOINT

tail -c +100001 "$text" > "$tmp/calib.txt"
# a cheap calibration (about a second), a slower one (tens of seconds: something to cancel
# while it runs), and one in between (for the restart test)
quick=(--calib "$tmp/calib.txt" --nsamples 2 --seqlen 32 --steps 1 --configs 16/8 --ctx 64 --encoder heuristic)
slow=(--calib "$tmp/calib.txt" --nsamples 8 --seqlen 128 --steps 10 --configs 16/8,24/10,24/8 --ctx 256)
medium=(--calib "$tmp/calib.txt" --nsamples 4 --seqlen 64 --steps 4 --configs 16/8,24/10 --ctx 64)

# lqd in the background on STATE (its log STATE.log); waits until it answers a status request
start_lqd() {
    local state="$1" endpoint="$2"
    shift 2
    "$lqd" --state-dir "$state" --listen "$endpoint" --np 2 "$@" >>"$state.log" 2>&1 &
    lqd_pid=$!
    daemons+=("$lqd_pid")
    for _ in $(seq 100); do
        "$fleet" --endpoint "${client_endpoint:-$endpoint}" --timeout 1 "${client_keys[@]}" status \
            >/dev/null 2>&1 && return 0
        kill -0 "$lqd_pid" 2>/dev/null || break
        sleep 0.1
    done
    fail "lqd on $endpoint did not start: $(tail -5 "$state.log")"
    return 1
}
client_keys=()
fl() { "$fleet" --endpoint "$ep" "$@"; }
# the state of job $1 as lqd reports it
job_state() {
    fl --json status "$1" 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["jobs"][0]["state"])' 2>/dev/null
}
# waits up to $2 seconds for job $1 to reach state $3
wait_state() {
    for _ in $(seq $(($2 * 5))); do
        [ "$(job_state "$1")" = "$3" ] && return 0
        sleep 0.2
    done
    fail "job $1 is '$(job_state "$1")' after $2 s, expected '$3'"
    return 1
}
# prints how long the previous section took (the test must stay within a few minutes)
section() { echo "cli_fleet: ${SECONDS}s: $1"; }
# pids of the processes lqd started for job $2 of state dir $1 (lqd tags each in its environment)
tagged() {
    for d in /proc/[0-9]*; do
        grep -qaz "^LQ_FLEET_JOB=$1#$2\." "$d/environ" 2>/dev/null && echo "${d#/proc/}"
    done
}
launches() { sqlite3 "$1/fleet.db" "SELECT count(*) FROM events WHERE job = $2 AND event = 'launch'"; }

# ---- help and refusals at start ----
section "help and refusals at start"
"$lqd" --help | grep -q -- "--curve-clients DIR" || fail "lqd --help"
"$fleet" --help | grep -q "manifest FILE.json" || fail "lq-fleet --help"
expect "$lqd" 2 "is not a loopback endpoint: a remote endpoint needs CurveZMQ" -- --state-dir "$tmp/x" --listen tcp://0.0.0.0:5999
expect "$lqd" 2 "is not a loopback endpoint" -- --state-dir "$tmp/x" --listen 'tcp://*:5999'
expect "$lqd" 2 "--curve-secret and --curve-clients go together" -- --state-dir "$tmp/x" --curve-secret "$tmp/k"
expect "$lqd" 2 "--state-dir is required" -- --listen "ipc://$tmp/x.sock"
expect "$lqd" 2 "--launcher ssh: expected local or slurm" -- --state-dir "$tmp/x" --launcher ssh
expect "$lqd" 1 "--calibrate $tmp/nope" -- --state-dir "$tmp/x" --calibrate "$tmp/nope"
expect "$fleet" 2 "--server-key and --key go together" -- --server-key "$tmp/k" status
expect "$fleet" 2 "unknown command 'frobnicate'" -- frobnicate
# the client's own refusals, each before it sends anything
nowhere=(--endpoint "ipc://$tmp/nowhere.sock" --timeout 1)
expect "$fleet" 2 "unknown option '--bogus'" -- --bogus status
expect "$fleet" 2 "keygen needs one PREFIX" -- keygen
expect "$fleet" 2 "status: wrong number of arguments" -- "${nowhere[@]}" status 1 2
expect "$fleet" 2 "status: 'abc' is not an integer" -- "${nowhere[@]}" status abc
expect "$fleet" 2 "submit: --model, --out and --budget are required" -- "${nowhere[@]}" submit --model m
expect "$fleet" 2 "submit: unknown argument '--frob' (lq-calibrate flags go after --)" -- "${nowhere[@]}" submit --frob
expect "$fleet" 2 "raw: no files" -- "${nowhere[@]}" raw
expect "$fleet" 1 "raw: $tmp/absent.bin: cannot open" -- "${nowhere[@]}" raw "$tmp/absent.bin"

# ---- a job: done, status, the same bytes as lq-calibrate run directly ----
section "a job"
st="$tmp/a"
ep="ipc://$tmp/a.sock"
start_lqd "$st" "$ep" --calibrate "$calibrate" || { finish cli_fleet; }
expect "$lqd" 1 "another lqd is running on this state directory" -- --state-dir "$st" --listen "ipc://$tmp/a2.sock" --calibrate "$calibrate"
fl submit --model "$model" --tokenizer "$tok" --out "$tmp/out1" --budget 4bits --db "$tmp/s1/store.db" \
    -- "${quick[@]}" >"$tmp/submit1.out" 2>&1 || fail "submit: $(cat "$tmp/submit1.out")"
grep -q "4bits: job 1 queued -> $tmp/out1" "$tmp/submit1.out" || fail "submit reply: $(cat "$tmp/submit1.out")"
wait_state 1 60 done
mpirun --oversubscribe -n 2 "$calibrate" --model "$model" --tokenizer "$tok" --out "$tmp/direct1" \
    --target-bits 4 --db "$tmp/sd/store.db" "${quick[@]}" >/dev/null 2>"$tmp/direct1.err" ||
    fail "direct lq-calibrate: $(tail -3 "$tmp/direct1.err")"
for f in config.json model.safetensors tokenizer.liftquant.json; do
    cmp -s "$tmp/out1/$f" "$tmp/direct1/$f" || fail "job 1's $f differs from a direct lq-calibrate run"
done
fl status >"$tmp/status.out" 2>&1 || fail "status: $(cat "$tmp/status.out")"
grep -q "^job 1  done .* 4bits  $model -> $tmp/out1  launches 1  exit 0" "$tmp/status.out" ||
    fail "status does not list job 1 as done: $(cat "$tmp/status.out")"
[ -s "$st/logs/job-1.1.log" ] || fail "no log for job 1"
expect fl 1 "job 99: no such job" -- status 99
expect fl 2 "field 'budget'" -- submit --model "$model" --out "$tmp/o" --budget 12XB
expect fl 1 "model $tmp/nope.bin" -- submit --model "$tmp/nope.bin" --out "$tmp/o" --budget 4bits
expect fl 2 "--out is set by the request's own fields" -- submit --model "$model" --out "$tmp/o" --budget 4bits -- --out /x

# ---- cancel: a queued job and a running one ----
section "cancel: a queued job and a running one"
fl submit --model "$model" --tokenizer "$tok" --out "$tmp/slow" --budget 4bits --db "$tmp/s2/store.db" \
    -- "${slow[@]}" >/dev/null 2>&1 || fail "submit slow"
fl submit --model "$model" --tokenizer "$tok" --out "$tmp/queued" --budget 4bits --db "$tmp/s3/store.db" \
    -- "${quick[@]}" >/dev/null 2>&1 || fail "submit queued"
wait_state 2 30 running
[ "$(job_state 3)" = queued ] || fail "job 3 should wait behind job 2 (max running 1): $(job_state 3)"
fl cancel 3 >"$tmp/c3.out" 2>&1 || fail "cancel 3: $(cat "$tmp/c3.out")"
grep -q "^job 3  cancelled" "$tmp/c3.out" || fail "cancel 3 reply: $(cat "$tmp/c3.out")"
sleep 1
[ "$(tagged "$st" 2 | wc -l)" -ge 3 ] || fail "job 2 should run as sh, mpirun and its ranks: $(tagged "$st" 2)"
fl cancel 2 >"$tmp/c2.out" 2>&1 || fail "cancel 2: $(cat "$tmp/c2.out")"
grep -q "^job 2  cancelled" "$tmp/c2.out" || fail "cancel 2 reply: $(cat "$tmp/c2.out")"
for _ in $(seq 50); do [ -z "$(tagged "$st" 2)" ] && break; sleep 0.2; done
[ -z "$(tagged "$st" 2)" ] || fail "job 2's processes still run 10 s after cancel: $(tagged "$st" 2)"
expect fl 1 "cancel: job 2 is already cancelled" -- cancel 2
sleep 1
[ "$(job_state 3)" = cancelled ] || fail "a cancelled queued job ran: $(job_state 3)"
[ -e "$tmp/queued" ] || [ -e "$tmp/slow" ] && fail "a cancelled job wrote its output"
[ "$(launches "$st" 3)" = 0 ] || fail "cancelled queued job 3 was launched"

# ---- 1,000 malformed requests, then a valid one ----
section "1,000 malformed requests, then a valid one"
python3 - "$tmp/bad" <<'EOF'
import json, os, random, sys
out = sys.argv[1]; os.makedirs(out)
r = random.Random(6)
shapes = [
    lambda: bytes(r.getrandbits(8) for _ in range(r.randint(1, 300))),           # random bytes
    lambda: b'{"op":"status"' + bytes([r.choice(b',:[]{"x ')]) * r.randint(0, 3),  # broken JSON
    lambda: json.dumps(r.choice([[], 1, "status", None, {"op": 5}, {"op": "status", "job": "x"},
        {"op": "status", "job": -3}, {"op": "cancel"}, {"op": "reboot"}, {"op": "status", "bogus": 1},
        {"op": "submit", "model": 3, "out": "/o", "budget": "4bits"},
        {"op": "submit", "model": "rel/path", "out": "/o", "budget": "4bits"},
        {"op": "submit", "model": "/m", "out": "/o", "budget": "4bits", "budgets": ["1GiB"]},
        {"op": "submit", "model": "/m", "out": "/o", "budgets": [4]},
        {"op": "submit", "model": "/m", "out": "/o", "budget": "99bits"},
        {"op": "submit", "model": "/m", "out": "/o", "budget": "4bits", "args": "--x"},
        {"op": "submit", "model": "/m", "out": "/o", "budget": "4bits", "if_changed": "yes"}])).encode(),
    lambda: b'{"op":"status","pad":"' + b"x" * (65536 + r.randint(0, 5000)) + b'"}',  # oversize
    lambda: b'{"op":"status","job":1}\x00trailing',                                 # NUL inside
]
for i in range(950):
    with open(f"{out}/{i:04d}", "wb") as f:
        f.write(shapes[i % len(shapes)]())
EOF
fl raw "$tmp"/bad/* >"$tmp/bad.out" 2>"$tmp/bad.err" || fail "raw malformed: $(tail -3 "$tmp/bad.err")"
echo '{"op":"status"}' >"$tmp/part"
for i in $(seq 50); do   # 50 multipart messages (2 to 4 frames)
    fl raw --multipart "$tmp/part" "$tmp/bad/000$((i % 10))" $( [ $((i % 2)) = 0 ] && echo "$tmp/part $tmp/part") \
        >>"$tmp/bad.out" 2>>"$tmp/bad.err" || fail "raw multipart $i: $(tail -1 "$tmp/bad.err")"
done
[ "$(wc -l <"$tmp/bad.out")" = 1000 ] || fail "1000 malformed requests got $(wc -l <"$tmp/bad.out") replies"
[ "$(grep -c '^{"ok":false,"error":"request: ' "$tmp/bad.out")" = 1000 ] ||
    fail "not every malformed request got a clear error: $(grep -v '"ok":false,"error":"request: ' "$tmp/bad.out" | head -3)"
grep -q 'over the limit of 65536' "$tmp/bad.out" || fail "no oversize refusal"
grep -q 'a multipart message (4 frames)' "$tmp/bad.out" || fail "no multipart refusal"
grep -q "field 'job' must be a positive integer" "$tmp/bad.out" || fail "no type refusal naming the field"
kill -0 "$lqd_pid" || fail "lqd died under malformed requests"
fl status 1 | grep -q "^job 1  done" || fail "lqd does not serve a valid request after 1,000 malformed ones"
kill -TERM "$lqd_pid"
wait "$lqd_pid"
[ $? = 0 ] || fail "lqd did not stop cleanly on SIGTERM"
grep -q "stopping on signal 15" "$st.log" || fail "no shutdown line: $(tail -2 "$st.log")"

# ---- kill -9 with three jobs queued, restart: each launched exactly once, all done ----
section "kill -9 and restart"
st="$tmp/r"
ep="ipc://$tmp/r.sock"
start_lqd "$st" "$ep" --calibrate "$calibrate" --max-running 1
for k in 1 2 3; do
    fl submit --model "$model" --tokenizer "$tok" --out "$tmp/r$k" --budget 4bits --db "$tmp/rs/store$k.db" \
        -- "${medium[@]}" --seed "$k" >/dev/null 2>&1 || fail "restart: submit $k"
done
wait_state 1 30 running
kill -9 "$lqd_pid"
wait "$lqd_pid" 2>/dev/null
start_lqd "$st" "$ep" --calibrate "$calibrate" --max-running 1
grep -q "job 1 adopted" "$st.log" || fail "the running job was not adopted at restart: $(tail -5 "$st.log")"
for k in 1 2 3; do
    wait_state "$k" 120 done
    [ "$(launches "$st" "$k")" = 1 ] || fail "job $k was launched $(launches "$st" "$k") times (want 1)"
    [ -s "$tmp/r$k/model.safetensors" ] || fail "job $k wrote no model"
done
# nothing lost: the adopted job's bytes equal an uninterrupted direct run's
direct_run() {   # direct_run OUT SEED: lq-calibrate as lqd runs it, without lqd
    mpirun --oversubscribe -n 2 "$calibrate" --model "$model" --tokenizer "$tok" --out "$1" \
        --target-bits 4 --db "$1.store/store.db" "${medium[@]}" --seed "$2" >/dev/null 2>"$1.err" ||
        fail "direct lq-calibrate: $(tail -3 "$1.err")"
}
same_bytes() {
    for f in config.json model.safetensors tokenizer.liftquant.json; do
        cmp -s "$1/$f" "$2/$f" || fail "$3: $f differs from an uninterrupted direct run"
    done
}
direct_run "$tmp/rd1" 1
same_bytes "$tmp/r1" "$tmp/rd1" "job 1 (adopted across the restart)"
# killed together with its job: the job is requeued, resumes from its store, and ends with the
# bytes of an uninterrupted run
fl submit --model "$model" --tokenizer "$tok" --out "$tmp/r4" --budget 4bits --db "$tmp/rs/store4.db" \
    -- "${medium[@]}" --seed 4 >/dev/null 2>&1 || fail "restart: submit 4"
wait_state 4 30 running
# mid-run: once the store holds its first result (of 70)
for _ in $(seq 600); do
    [ "$(sqlite3 "$tmp/rs/store4.db" "SELECT count(*) FROM results" 2>/dev/null || echo 0)" -ge 1 ] && break
    sleep 0.05
done
kill -9 "$lqd_pid"
kill -9 $(tagged "$st" 4)
wait "$lqd_pid" 2>/dev/null
for _ in $(seq 50); do [ -z "$(tagged "$st" 4)" ] && break; sleep 0.1; done
start_lqd "$st" "$ep" --calibrate "$calibrate" --max-running 1
grep -q "job 4 requeued: its process vanished" "$st.log" || fail "job 4 not requeued: $(tail -5 "$st.log")"
wait_state 4 10 running
[ "$(launches "$st" 4)" = 2 ] || fail "requeued job 4 should be on its second launch: $(launches "$st" 4)"
wait_state 4 120 done
[ "$(launches "$st" 4)" = 2 ] || fail "job 4 was launched $(launches "$st" 4) times (want 2)"
direct_run "$tmp/rd4" 4
same_bytes "$tmp/r4" "$tmp/rd4" "job 4 (killed with lqd, requeued)"
kill -TERM "$lqd_pid"
wait "$lqd_pid"

# ---- CurveZMQ: 1,000 refused clients, then a listed one is served ----
section "CurveZMQ: 1,000 refused clients, then a listed one is served"
mkdir -p "$tmp/keys/clients"
"$fleet" keygen "$tmp/keys/server" >/dev/null || fail "keygen server"
"$fleet" keygen "$tmp/keys/clients/alice" >/dev/null || fail "keygen alice"
"$fleet" keygen "$tmp/keys/stranger" >/dev/null || fail "keygen stranger"
[ "$(stat -c %a "$tmp/keys/server.key")" = 600 ] || fail "a secret key file is not mode 0600"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
st="$tmp/c"
ep="tcp://127.0.0.1:$port"
client_endpoint="$ep"
client_keys=(--server-key "$tmp/keys/server.pub" --key "$tmp/keys/clients/alice.key")
# a wildcard bind is allowed with keys
start_lqd "$st" "tcp://0.0.0.0:$port" --calibrate "$calibrate" --curve-secret "$tmp/keys/server.key" \
    --curve-clients "$tmp/keys/clients"
start=$(date +%s.%N)
refused=0
for i in $(seq 500); do
    ASAN_OPTIONS="$client_asan" "$fleet" --endpoint "$ep" --timeout 10 --server-key "$tmp/keys/server.pub" \
        --key "$tmp/keys/stranger.key" status >/dev/null 2>"$tmp/u.err" && fail "an unknown key was served"
    grep -q "refused this client: CurveZMQ authentication failed" "$tmp/u.err" && refused=$((refused + 1))
    ASAN_OPTIONS="$client_asan" "$fleet" --endpoint "$ep" --timeout 10 status >/dev/null 2>"$tmp/n.err" &&
        fail "a client without keys was served"
    grep -q "the server requires CurveZMQ" "$tmp/n.err" && refused=$((refused + 1))
done
end=$(date +%s.%N)
[ "$refused" = 1000 ] || fail "$refused of 1000 unauthenticated clients got a clear refusal: $(cat "$tmp/u.err" "$tmp/n.err")"
"$fleet" --endpoint "$ep" "${client_keys[@]}" status >/dev/null 2>"$tmp/ok.err" ||
    fail "the listed client is not served after 1000 refusals: $(cat "$tmp/ok.err")"
kill -0 "$lqd_pid" || fail "lqd died under unauthenticated clients"
echo "cli_fleet: 1000 unauthenticated clients refused in $(python3 -c "print(f'{$end - $start:.1f}')") s"
[ "$(grep -c 'refused a connection from 127.0.0.1: unknown client key' "$st.log")" = 500 ] ||
    fail "lqd did not log each refused key"
# SIGHUP re-reads the client keys: a key added to the directory is served after it, and a
# directory left with no keys keeps the previous list rather than locking everyone out
stranger=(--server-key "$tmp/keys/server.pub" --key "$tmp/keys/stranger.key")
cp "$tmp/keys/stranger.pub" "$tmp/keys/clients/"
"$fleet" --endpoint "$ep" --timeout 10 "${stranger[@]}" status >/dev/null 2>&1 && fail "a new key was served before SIGHUP"
hangup_then() {   # hangup_then LOG_LINE: SIGHUP, then wait for lqd to log the line
    kill -HUP "$lqd_pid"
    for _ in $(seq 50); do grep -q "$1" "$st.log" && return 0; sleep 0.1; done
    fail "no '$1' after SIGHUP: $(tail -3 "$st.log")"
}
hangup_then "SIGHUP: 2 client key(s) loaded from $tmp/keys/clients"
"$fleet" --endpoint "$ep" --timeout 10 "${stranger[@]}" status >/dev/null 2>"$tmp/s.err" ||
    fail "a key added before SIGHUP is not served: $(cat "$tmp/s.err")"
mkdir "$tmp/keys/held" && mv "$tmp/keys/clients/"*.pub "$tmp/keys/held/"
hangup_then "no client key files (\*.pub) in it; keeping the 2 client key(s) loaded before"
"$fleet" --endpoint "$ep" "${client_keys[@]}" status >/dev/null 2>&1 || fail "an empty key directory locked alice out"
mv "$tmp/keys/held/alice.pub" "$tmp/keys/clients/"
hangup_then "SIGHUP: 1 client key(s) loaded"
"$fleet" --endpoint "$ep" --timeout 10 "${stranger[@]}" status >/dev/null 2>&1 && fail "a key removed before SIGHUP is still served"
"$fleet" --endpoint "$ep" "${client_keys[@]}" status >/dev/null 2>&1 || fail "alice is not served after the last SIGHUP"
kill -TERM "$lqd_pid"
wait "$lqd_pid"
client_endpoint=
client_keys=()

# ---- a manifest: done pairs are skipped, a touched model is resubmitted ----
section "a manifest: done pairs are skipped, a touched model is resubmitted"
st="$tmp/m"
ep="ipc://$tmp/m.sock"
start_lqd "$st" "$ep" --calibrate "$calibrate"
mkdir -p "$tmp/mf/models"
cp "$model" "$tmp/mf/models/stories260K.bin"
cat >"$tmp/mf/fleet.json" <<EOF
{"out_root": "release",
 "budgets": ["4bits", "600KiB"],
 "args": $(python3 -c 'import json,sys; print(json.dumps(sys.argv[1:]))' "${quick[@]}"),
 "models": [{"name": "stories", "model": "models/stories260K.bin", "tokenizer": "$tok"}]}
EOF
fl manifest "$tmp/mf/fleet.json" >"$tmp/m1.out" 2>&1 || fail "manifest: $(cat "$tmp/m1.out")"
[ "$(grep -c 'job [0-9]* queued' "$tmp/m1.out")" = 2 ] || fail "manifest first run: $(cat "$tmp/m1.out")"
wait_state 1 60 done
wait_state 2 60 done
[ -s "$tmp/mf/release/stories/4bits/model.safetensors" ] && [ -s "$tmp/mf/release/stories/600KiB/model.safetensors" ] ||
    fail "the manifest's outputs are missing"
fl manifest "$tmp/mf/fleet.json" >"$tmp/m2.out" 2>&1 || fail "manifest again: $(cat "$tmp/m2.out")"
grep -q "^stories 4bits: skipped (done in job 1)" "$tmp/m2.out" && grep -q "^stories 600KiB: skipped (done in job 2)" "$tmp/m2.out" ||
    fail "manifest second run did not skip: $(cat "$tmp/m2.out")"
touch -d '+1 minute' "$tmp/mf/models/stories260K.bin"
fl manifest "$tmp/mf/fleet.json" >"$tmp/m3.out" 2>&1 || fail "manifest after touch: $(cat "$tmp/m3.out")"
[ "$(grep -c 'job [0-9]* queued' "$tmp/m3.out")" = 2 ] || fail "a touched model was not resubmitted: $(cat "$tmp/m3.out")"
wait_state 3 60 done
wait_state 4 60 done
# a bad manifest is refused whole, naming the entry at fault, before anything is queued (the
# good first model here must not be submitted either)
bad_manifest() {
    local pattern="$1" models="$2" top="${3:-}"
    printf '{"out_root": "release", "budgets": ["4bits"], %s "models": [{"name": "ok", "model": "models/stories260K.bin", "tokenizer": "%s"}, %s]}\n' \
        "$top" "$tok" "$models" >"$tmp/mf/bad.json"
    expect "$fleet" 1 "$pattern" -- --endpoint "$ep" manifest "$tmp/mf/bad.json"
}
bad_manifest 'models[1].args[1] is not a string' '{"name": "b", "model": "m", "args": ["--steps", 10]}'
bad_manifest '"args"[0] is not a string' '{"name": "b", "model": "m"}' '"args": [null],'
bad_manifest 'models[1].budgets[0] is not a string' '{"name": "b", "model": "m", "budgets": [3.0]}'
bad_manifest 'models[1] needs "name"' '{"name": "..", "model": "m"}'
bad_manifest 'models[1] needs "name"' '{"name": "", "model": "m"}'
bad_manifest 'models[1] (b) has no budgets' '{"name": "b", "model": "m", "budgets": []}'
bad_manifest 'models[1] (b) needs "model"' '{"name": "b", "model": 7}'
bad_manifest 'models[1].budgets must be an array of strings' '{"name": "b", "model": "m", "budgets": "4bits"}'
bad_manifest 'models[1].budgets has 65 entries, at most 64' "{\"name\": \"b\", \"model\": \"m\", \"budgets\": $(python3 -c 'import json; print(json.dumps(["%dbits" % (i % 4 + 2) for i in range(65)]))')}"
[ "$(fl --json status 2>/dev/null | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["jobs"]))')" = 4 ] ||
    fail "a refused manifest queued jobs: $(fl status 2>&1)"
# an output under a regular file: the job fails before launching, naming the component at fault
: >"$tmp/a_file"
fl submit --model "$model" --tokenizer "$tok" --out "$tmp/a_file/sub/out" --budget 4bits --db "$tmp/mf/store5.db" \
    -- "${quick[@]}" >/dev/null 2>&1 || fail "submit under a file"
wait_state 5 30 failed
fl status 5 2>&1 | grep -qF "cannot create the output's directory: $tmp/a_file: not a directory" ||
    fail "job 5's error: $(fl status 5 2>&1)"
kill -TERM "$lqd_pid"
wait "$lqd_pid"

# ---- the Slurm launcher, on a private single-node Slurm (cluster/slurm-local.sh) ----
section "the Slurm launcher"
here="$(cd "$(dirname "$0")" && pwd)"
cluster="$(cd "$here/../cluster" && pwd)"
chmod 755 "$tmp"   # munged wants every directory above its socket searchable by all
cpus="$(nproc)"; [ "$cpus" -ge 2 ] || cpus=2
if LQ_SLURM_CPUS="$cpus" bash "$cluster/slurm-local.sh" start "$tmp/slurm" >"$tmp/slurm-start.log" 2>&1; then
    export SLURM_CONF="$tmp/slurm/slurm.conf"
    st="$tmp/s"
    ep="ipc://$tmp/s.sock"
    start_lqd "$st" "$ep" --calibrate "$calibrate" --launcher slurm --sbatch-script "$cluster/lq-calibrate.sbatch"
    fl submit --model "$model" --tokenizer "$tok" --out "$tmp/sl1" --budget 4bits --db "$tmp/ss/store.db" \
        -- "${quick[@]}" >/dev/null 2>&1 || fail "slurm: submit"
    wait_state 1 120 done
    slurm_id="$(fl --json status 1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["jobs"][0]["slurm_id"])')"
    [ -n "$slurm_id" ] && [ "$slurm_id" != None ] || fail "slurm: job 1 has no Slurm id"
    for f in config.json model.safetensors tokenizer.liftquant.json; do
        cmp -s "$tmp/sl1/$f" "$tmp/direct1/$f" ||
            fail "slurm: job 1's $f differs from a direct lq-calibrate run: $(ls -l "$tmp/sl1" 2>&1; tail -n 5 "$st"/logs/job-1.1.log)"
    done
    fl submit --model "$model" --tokenizer "$tok" --out "$tmp/sl2" --budget 4bits --db "$tmp/ss/store2.db" \
        -- "${slow[@]}" >/dev/null 2>&1 || fail "slurm: submit slow"
    wait_state 2 60 running
    sleep 2
    slow_id="$(fl --json status 2 | python3 -c 'import json,sys; print(json.load(sys.stdin)["jobs"][0]["slurm_id"])')"
    fl cancel 2 >/dev/null 2>&1 || fail "slurm: cancel 2"
    for _ in $(seq 50); do
        case "$(squeue -h -j "$slow_id" -o %T 2>/dev/null)" in ""|CANCELLED) break ;; esac
        sleep 0.2
    done
    case "$(squeue -h -j "$slow_id" -o %T 2>/dev/null)" in ""|CANCELLED) ;; *) fail "slurm: job $slow_id still $(squeue -h -j "$slow_id" -o %T) after cancel" ;; esac
    section "the Slurm launcher: lqd killed with -9 while a Slurm job runs"
    # lqd killed with -9 while a Slurm job runs: the restarted lqd adopts it by its Slurm id,
    # it is launched once, and its bytes equal an uninterrupted direct run's
    # (seeds 1 and 4: the direct runs of the restart section above are the references)
    fl submit --model "$model" --tokenizer "$tok" --out "$tmp/sl3" --budget 4bits --db "$tmp/ss/store3.db" \
        -- "${medium[@]}" --seed 1 >/dev/null 2>&1 || fail "slurm: submit 3"
    wait_state 3 60 running
    kill -9 "$lqd_pid"
    wait "$lqd_pid" 2>/dev/null
    start_lqd "$st" "$ep" --calibrate "$calibrate" --launcher slurm --sbatch-script "$cluster/lq-calibrate.sbatch"
    grep -q "job 3 adopted (slurm job [0-9]*)" "$st.log" || fail "slurm: job 3 was not adopted at restart: $(tail -5 "$st.log")"
    wait_state 3 120 done
    [ "$(launches "$st" 3)" = 1 ] || fail "slurm: job 3 was launched $(launches "$st" 3) times (want 1)"
    same_bytes "$tmp/sl3" "$tmp/rd1" "slurm job 3 (adopted across an lqd kill -9)"
    section "the Slurm launcher: lqd killed between sbatch and recording the job's id"
    # an sbatch that submits, then kills lqd before it reads the id: the restarted lqd finds the
    # job by its name (lqd-JOB-LAUNCH) and adopts it instead of submitting it again
    mkdir -p "$tmp/killer-bin"
    printf '#!/bin/sh\nout="$(%q "$@")" || exit $?\nkill -9 $PPID\necho "$out"\n' "$(command -v sbatch)" \
        >"$tmp/killer-bin/sbatch"
    chmod +x "$tmp/killer-bin/sbatch"
    kill -TERM "$lqd_pid"
    wait "$lqd_pid"
    PATH="$tmp/killer-bin:$PATH" start_lqd "$st" "$ep" --calibrate "$calibrate" --launcher slurm \
        --sbatch-script "$cluster/lq-calibrate.sbatch"
    fl submit --model "$model" --tokenizer "$tok" --out "$tmp/sl4" --budget 4bits --db "$tmp/ss/store4.db" \
        -- "${medium[@]}" --seed 4 >/dev/null 2>&1 || fail "slurm: submit 4"
    for _ in $(seq 100); do kill -0 "$lqd_pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$lqd_pid" 2>/dev/null && fail "slurm: the killing sbatch did not stop lqd"
    wait "$lqd_pid" 2>/dev/null
    start_lqd "$st" "$ep" --calibrate "$calibrate" --launcher slurm --sbatch-script "$cluster/lq-calibrate.sbatch"
    grep -q "job 4 adopted (slurm job [0-9]*, found by name lqd-4-1)" "$st.log" ||
        fail "slurm: job 4 was not adopted by name: $(tail -5 "$st.log")"
    wait_state 4 120 done
    [ "$(launches "$st" 4)" = 1 ] || fail "slurm: job 4 was launched $(launches "$st" 4) times (want 1)"
    same_bytes "$tmp/sl4" "$tmp/rd4" "slurm job 4 (adopted by name)"
    kill -TERM "$lqd_pid"
    wait "$lqd_pid"
    bash "$cluster/slurm-local.sh" stop "$tmp/slurm" >/dev/null 2>&1
else
    fail "slurm-local.sh start failed: $(tail -5 "$tmp/slurm-start.log")"
fi

finish cli_fleet
