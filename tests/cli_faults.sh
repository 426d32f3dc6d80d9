#!/usr/bin/env bash
# Fault injection for lq-calibrate (issue 6, item 4), on stories260K under mpirun on localhost.
# Every fault must end with nothing lost: after it, rerunning the same command writes an OUT
# whose every file has the same sha256 as an uninterrupted run's, and measures only what the
# store did not already hold. The cases, each on its own store:
#   reference     an uninterrupted run: the bytes every other case must reproduce
#   worker_kill   kill -9 of worker rank 1 mid-run
#   rank0_kill    kill -9 of rank 0 mid-run; mpirun must leave no rank running
#   disk_full     store, blobs and OUT on a small tmpfs that fills mid-run, then during assembly
#   db_locked     another sqlite3 holding the store's write lock: briefly (the run waits), then
#                 past --db-timeout (a clear error)
#   corrupt_blob  a bit flipped in one chosen blob, another truncated, a third deleted
# Usage: cli_faults.sh LQ_CALIBRATE SHARED_DATA_DIR [CASE...]   (no CASE: all; reference always)
set -u
calibrate="$1"
data="$2"
shift 2
cases=("$@")
[ ${#cases[@]} -eq 0 ] && cases=(worker_kill rank0_kill disk_full db_locked corrupt_blob)
model="$data/llama2c-stories260K/stories260K.bin"
tok="$data/llama2c-stories260K/tok512.bin"
text="$data/tinystories/tinystories_val_a.txt"
tmp="$(mktemp -d)"
mounted=""
cleanup() {
    [ -n "$mounted" ] && umount "$mounted"
    rm -rf "$tmp"
}
trap cleanup EXIT
source "$(dirname "$0")/cli_lib.sh"
mpi_test_env

tail -c +100001 "$text" > "$tmp/calib.txt"
# the same job as cli_calibrate.sh: 35 linears × 3 configs = 105 results
common=(--model "$model" --tokenizer "$tok" --calib "$tmp/calib.txt" --nsamples 8 --seqlen 128
        --steps 10 --configs 16/8,24/10,24/8 --ctx 256 --target-bits 4)
total=105

say() { echo "-- $*"; }
# every rank of a job carries LQ_FAULT_TAG (mpirun passes its environment on), so the processes
# of this test's jobs are told apart from anyone else's lq-calibrate on the machine
cal() {   # cal TAG N STORE OUT [FLAGS...]: runs a job in the foreground, output in $tmp/TAG.{out,err}
    local tag="$1" n="$2" store="$3" out="$4"
    shift 4
    LQ_FAULT_TAG="$tmp/$tag" mpirun --oversubscribe -n "$n" "$calibrate" "${common[@]}" \
        --db "$store/store.db" --out "$out" "$@" >"$tmp/$tag.out" 2>"$tmp/$tag.err"
}
start() {   # as cal, in the background; the job's mpirun pid in $job
    cal "$@" &
    job=$!
}
results() { sqlite3 -readonly "$1/store.db" 'SELECT count(*) FROM results' 2>/dev/null; }
# waits until the store holds at least $2 results while the job runs; fails if the job ends first
wait_results() {
    local store="$1" want="$2" n
    for _ in $(seq 3000); do
        n="$(results "$store")"
        [ "${n:-0}" -ge "$want" ] && return 0
        kill -0 "$job" 2>/dev/null || { fail "the job ended with ${n:-0} of $want results"; return 1; }
        sleep 0.1
    done
    fail "no $want results after 300 s"
    return 1
}
# the pids of this test's live (not zombie) lq-calibrate processes with tag $1, rank $2 (any: "")
ranks() {
    local p
    for p in $(pgrep -x lq-calibrate); do
        [ "$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null)" = Z ] && continue
        tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qxF "LQ_FAULT_TAG=$tmp/$1" || continue
        [ -z "$2" ] || tr '\0' '\n' <"/proc/$p/environ" | grep -qx "OMPI_COMM_WORLD_RANK=$2" || continue
        echo "$p"
    done
}
hashes() { (cd "$1" && find . -type f | sort | xargs sha256sum); }
same_bytes() {   # same_bytes OUT WHAT: OUT's files hash as the reference's
    if [ ! -d "$1" ]; then fail "$2: no output $1"; return; fi
    [ "$(hashes "$1")" = "$reference" ] || fail "$2: $1 differs from the uninterrupted run:
$(diff <(echo "$reference") <(hashes "$1"))"
}
# what a job measured: its "N results to measure" line, none when all were done
measured() {
    local n
    n="$(grep -o '[0-9]* results to measure' "$tmp/$1.err" | cut -d' ' -f1)"
    echo "${n:-0}"
}
# tensor, config, checksum and commit time of every result: a row a rerun measured again would
# show a new time
rows() { sqlite3 -readonly "$1/store.db" 'SELECT tensor, config, checksum, created FROM results' | sort; }
intact() {   # intact STORE WHAT: SQLite's own check, and every result's blob has its checksum
    local ok
    ok="$(sqlite3 -readonly "$1/store.db" 'PRAGMA integrity_check' 2>&1)"
    [ "$ok" = ok ] || fail "$2: integrity_check says: $ok"
    # FNV-1a 64 as common/status.c computes it, over each result's blob
    python3 - "$1" <<'EOF' || fail "$2: a result whose blob fails its checksum is counted as done"
import os, sqlite3, sys
store = sys.argv[1]
db = sqlite3.connect(f"file:{store}/store.db?mode=ro", uri=True)
bad = 0
for blob, want in db.execute("SELECT blob, checksum FROM results"):
    h = 0xcbf29ce484222325
    try:
        data = open(os.path.join(store, blob), "rb").read()
    except OSError as e:
        print(f"{blob}: {e}"); bad += 1; continue
    for b in data:
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    if h != want & 0xFFFFFFFFFFFFFFFF:
        print(f"{blob}: checksum {h:016x}, the store says {want & 0xFFFFFFFFFFFFFFFF:016x}"); bad += 1
sys.exit(1 if bad else 0)
EOF
}
no_output() {   # no_output OUT WHAT: a failed job leaves neither OUT nor OUT.tmp
    [ -e "$1" ] && fail "$2: the failed job left $1"
    [ -e "$1.tmp" ] && fail "$2: the failed job left $1.tmp"
}
# after a fault: the rerun ends with the reference bytes, measures exactly what was missing, and
# leaves the results that were already there as they were
rerun_check() {   # rerun_check TAG N STORE OUT BEFORE_ROWS WHAT
    local tag="$1" n="$2" store="$3" out="$4" before="$5" what="$6"
    local had
    had="$(grep -c . <<<"$before")"
    [ -z "$before" ] && had=0
    cal "$tag" "$n" "$store" "$out" || { fail "$what: rerun: $(tail -3 "$tmp/$tag.err")"; return; }
    same_bytes "$out" "$what, rerun"
    [ "$(measured "$tag")" = $((total - had)) ] ||
        fail "$what: the rerun should measure the $((total - had)) results missing, not $(measured "$tag")"
    [ "$(results "$store")" = "$total" ] || fail "$what: $(results "$store") results after the rerun"
    local gone
    gone="$(comm -23 <(echo "$before") <(rows "$store"))"
    [ -z "$before" ] || [ -z "$gone" ] || fail "$what: the rerun rewrote results it had: $gone"
    say "rerun: measured $(measured "$tag") (the store had $had of $total), same bytes"
}
# some but not all of the results committed when the fault struck
partial() {   # partial STORE WHAT
    local n
    n="$(results "$1")"
    [ "${n:-0}" -gt 0 ] && [ "${n:-0}" -lt "$total" ] ||
        fail "$2: the fault should strike mid-run, but the store holds ${n:-0} of $total results"
}

# ---- reference: an uninterrupted run ------------------------------------------------------------
case_reference() {
    say "reference: an uninterrupted run (-n 2), sha256 of every file in OUT"
    cal ref 2 "$tmp/sref" "$tmp/ref" || { fail "reference run: $(tail -5 "$tmp/ref.err")"; return 1; }
    [ "$(measured ref)" = "$total" ] || fail "the reference run measured $(measured ref), not $total"
    reference="$(hashes "$tmp/ref")"
    [ "$(grep -c . <<<"$reference")" -ge 3 ] || fail "reference output: $reference"
    echo "$reference" | sed 's/^/   /'
}

# ---- kill -9 of a worker, then of rank 0, mid-run -----------------------------------------------
kill_rank() {   # kill_rank TAG RANK
    local tag="$1" rank="$2" store="$tmp/s$1" out="$tmp/$1"
    say "$tag: kill -9 of rank $rank once the store holds 20 results (-n 3), then rerun"
    start "$tag" 3 "$store" "$out"
    wait_results "$store" 20 || { wait "$job"; return; }
    local pid
    pid="$(ranks "$tag" "$rank")"
    [ "$(grep -c . <<<"$pid")" = 1 ] || { fail "$tag: rank $rank's pid: '$pid'"; wait "$job"; return; }
    kill -9 "$pid"
    wait "$job" && fail "$tag: the job exited 0 after rank $rank was killed"
    # mpirun tears the other ranks down when one dies; give it a moment, then none may be left
    for _ in $(seq 50); do [ -z "$(ranks "$tag" "")" ] && break; sleep 0.1; done
    local left
    left="$(ranks "$tag" "")"
    [ -z "$left" ] || { fail "$tag: ranks still running after mpirun exited: $left"; kill -9 $left; }
    no_output "$out" "$tag"
    partial "$store" "$tag"
    intact "$store" "$tag"
    say "killed pid $pid at $(results "$store")/$total results; exit non-zero, no OUT, no rank left, store intact"
    rerun_check "$tag-rerun" 2 "$store" "$out" "$(rows "$store")" "$tag"
}
case_worker_kill() { kill_rank worker_kill 1; }
case_rank0_kill() { kill_rank rank0_kill 0; }

# ---- a full disk --------------------------------------------------------------------------------
case_disk_full() {
    local disk="$tmp/disk" store="$tmp/disk/s" out="$tmp/disk/out"
    mkdir -p "$disk"
    # the finished store, blobs and OUT take about 2.6 MiB (most of it the store's -wal file,
    # a few pages per commit until SQLite checkpoints it); 1 MiB runs out mid-run
    mount -t tmpfs -o size=1m tmpfs "$disk" || { fail "disk_full: cannot mount a tmpfs (needs root)"; return; }
    mounted="$disk"
    say "disk_full: store, blobs and OUT on a 1 MiB tmpfs"
    cal full 2 "$store" "$out" && fail "disk_full: the job succeeded on a full disk"
    local err
    err="$(grep -v '^lq-calibrate: \[' "$tmp/full.err" | grep -m1 "$disk/.*\(No space left on device\|no space left\)")"
    [ -n "$err" ] || fail "disk_full: no message naming a file on $disk and the lack of space: $(tail -5 "$tmp/full.err")"
    say "message: $err"
    no_output "$out" "disk_full"
    partial "$store" "disk_full"
    intact "$store" "disk_full"
    say "exit non-zero at $(results "$store")/$total results; no OUT; store intact"
    mount -o remount,size=64m "$disk" || { fail "disk_full: remount"; return; }
    rerun_check full-rerun 2 "$store" "$out" "$(rows "$store")" "disk_full"

    # the disk fills while OUT is written (everything measured): OUT.tmp is removed, nothing else
    # changes, and after space is freed a rerun assembles the same bytes without measuring
    local used
    used="$(df -k --output=used "$disk" | tail -1)"
    mount -o remount,size=$((used + 100))k "$disk" || { fail "disk_full: remount to $((used + 100)) KiB"; return; }
    say "disk_full: OUT again with $(df -k --output=avail "$disk" | tail -1) KiB free"
    local before
    before="$(rows "$store")"
    cal full-out 2 "$store" "$disk/out2" && fail "disk_full: OUT was written on a full disk"
    err="$(grep -m1 "$disk/out2.*No space left on device" "$tmp/full-out.err")"
    [ -n "$err" ] || fail "disk_full: assembling: $(tail -3 "$tmp/full-out.err")"
    say "message: $err"
    no_output "$disk/out2" "disk_full (assembly)"
    [ "$(rows "$store")" = "$before" ] || fail "disk_full: a failed assembly changed the results"
    intact "$store" "disk_full (assembly)"
    mount -o remount,size=64m "$disk" || { fail "disk_full: remount"; return; }
    rerun_check full-out-rerun 2 "$store" "$disk/out2" "$before" "disk_full (assembly)"
    umount "$disk" && mounted=""
}

# ---- another writer holding the store's lock ----------------------------------------------------
hold_lock() {   # hold_lock STORE SECONDS: a sqlite3 shell holds the write lock; pid in $holder
    local marker="$tmp/held.$RANDOM"
    { printf '.timeout 60000\nBEGIN EXCLUSIVE;\n.shell touch %s\n' "$marker"
      # the time counts from the lock (-bail: no marker when BEGIN fails)
      for _ in $(seq 600); do [ -e "$marker" ] && break; sleep 0.05; done
      sleep "$2"
      printf 'COMMIT;\n'; } | sqlite3 -bail "$1/store.db" >/dev/null &
    holder=$!
    for _ in $(seq 600); do [ -e "$marker" ] && return 0; sleep 0.05; done
    fail "db_locked: the sqlite3 shell did not get the lock"
    return 1
}
case_db_locked() {
    local store="$tmp/slock" out="$tmp/lock"
    # a store with some results to resume from: the run stops itself after 20 (the test hook)
    LQ_CALIBRATE_STOP_AFTER=20 cal lock-seed 2 "$store" "$out" && fail "db_locked: the stop hook did not stop the run"
    say "db_locked: the lock held for 4 s as the run starts, and for 6 s mid-run (default --db-timeout 60)"
    local before
    before="$(rows "$store")"
    hold_lock "$store" 4 || return
    local t0=$SECONDS
    start lock 2 "$store" "$out"
    wait "$holder" || fail "db_locked: the first holder could not commit"
    wait_results "$store" 50 || { wait "$job"; return; }
    local at
    hold_lock "$store" 6 || { wait "$job"; return; }
    at="$(rows "$store")"
    sleep 3   # 3 s short of the release, a margin for a loaded machine
    # WAL lets this reader in beside the holder; rank 0, a writer, must be waiting
    [ "$(rows "$store")" = "$at" ] || fail "db_locked: results were committed while the lock was held"
    wait "$holder" || fail "db_locked: the second holder could not commit"
    at="$(grep -c . <<<"$at")"
    wait "$job" || fail "db_locked: the run failed behind a 4 s lock: $(tail -3 "$tmp/lock.err")"
    same_bytes "$out" "db_locked (4 and 6 s locks)"
    local had
    had="$(grep -c . <<<"$before")"
    [ "$(measured lock)" = $((total - had)) ] || fail "db_locked: measured $(measured lock), not $((total - had))"
    say "the run waited out both locks (held at $at results) and finished in $((SECONDS - t0)) s: same bytes"

    # past the busy timeout: at the start, then mid-run
    local store2="$tmp/slock2" out2="$tmp/lock2"
    cp -r "$store" "$store2"
    hold_lock "$store2" 5 || return
    say "db_locked: the lock held 5 s, --db-timeout 1, as the run starts"
    cal lock-start 1 "$store2" "$out2" --db-timeout 1 && fail "db_locked: the run ignored a held lock"
    grep -q "$store2/store.db: .*database is locked.*longer than the 1 s busy timeout" "$tmp/lock-start.err" ||
        fail "db_locked: at the start: $(cat "$tmp/lock-start.err")"
    say "message: $(grep -m1 'busy timeout' "$tmp/lock-start.err")"
    wait "$holder"
    no_output "$out2" "db_locked (start)"

    local store3="$tmp/slock3" out3="$tmp/lock3"
    say "db_locked: the lock held 6 s, --db-timeout 2, mid-run"
    start lock-mid 2 "$store3" "$out3" --db-timeout 2
    wait_results "$store3" 20 || { wait "$job"; return; }
    hold_lock "$store3" 6 || { wait "$job"; return; }
    wait "$job" && fail "db_locked: the run finished behind a lock held past its --db-timeout"
    wait "$holder"
    grep -q "$store3/store.db: .*database is locked.*longer than the 2 s busy timeout" "$tmp/lock-mid.err" ||
        fail "db_locked: mid-run: $(grep -v '^lq-calibrate: \[' "$tmp/lock-mid.err" | tail -5)"
    say "message: $(grep -m1 'busy timeout' "$tmp/lock-mid.err")"
    no_output "$out3" "db_locked (mid-run)"
    partial "$store3" "db_locked (mid-run)"
    intact "$store3" "db_locked (mid-run)"
    rerun_check lock-mid-rerun 2 "$store3" "$out3" "$(rows "$store3")" "db_locked (mid-run)"
}

# ---- corrupted blobs ------------------------------------------------------------------------------
case_corrupt_blob() {
    local store="$tmp/scorrupt" out="$tmp/corrupt"
    cp -r "$tmp/sref" "$store"
    # three of the blobs the reference run's OUT was assembled from, so the output shows that the
    # measured-again blobs are the same bytes
    mapfile -t chosen < <(sqlite3 -readonly "$store/store.db" "SELECT x.blob FROM assignments a
        JOIN results x USING (run, tensor, config) ORDER BY a.tensor LIMIT 3 OFFSET 10")
    [ ${#chosen[@]} = 3 ] || { fail "corrupt_blob: chosen blobs: ${chosen[*]}"; return; }
    local flipped="$store/${chosen[0]}" cut="$store/${chosen[1]}" gone="$store/${chosen[2]}"
    mkdir -p "$tmp/originals"
    cp "$flipped" "$cut" "$gone" "$tmp/originals/"
    say "corrupt_blob: one bit flipped mid-file in ${chosen[0]}, ${chosen[1]} cut to half, ${chosen[2]} deleted"
    python3 - "$flipped" <<'EOF'
import sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
b[len(b) // 2] ^= 0x10
open(p, "r+b").write(b)
EOF
    truncate -s $(( $(stat -c %s "$cut") / 2 )) "$cut"
    rm "$gone"
    local before
    before="$(rows "$store" | grep -v -e "$(sqlite3 -readonly "$store/store.db" "SELECT '^' || tensor || '|' || config || '|'
        FROM results WHERE blob IN ('${chosen[0]}', '${chosen[1]}', '${chosen[2]}')")")"
    cal corrupt 2 "$store" "$out" || { fail "corrupt_blob: $(tail -3 "$tmp/corrupt.err")"; return; }
    for f in "$flipped" "$cut" "$gone"; do
        grep -qF "blob $f is missing or fails its checksum" "$tmp/corrupt.err" ||
            fail "corrupt_blob: $f not reported: $(grep -i blob "$tmp/corrupt.err")"
        cmp -s "$f" "$tmp/originals/$(basename "$f")" || fail "corrupt_blob: $f measured again is not the original bytes"
    done
    [ "$(measured corrupt)" = 3 ] || fail "corrupt_blob: measured $(measured corrupt), not the 3 bad blobs"
    [ -z "$(comm -23 <(echo "$before") <(rows "$store"))" ] || fail "corrupt_blob: sound results were measured again"
    same_bytes "$out" "corrupt_blob"
    intact "$store" "corrupt_blob"
    say "all three reported, measured again (3 results) to the original blob bytes; same OUT bytes"
}

t_all=$SECONDS
case_reference || { finish cli_faults; exit 1; }
for c in "${cases[@]}"; do
    t0=$SECONDS
    "case_$c"
    say "$c: $((SECONDS - t0)) s"
done
say "all: $((SECONDS - t_all)) s"
finish cli_faults
