#!/usr/bin/env bash
# cluster/ under a real Slurm (issue 6): cluster/slurm-local.sh starts a private single-node
# Slurm (munged, slurmctld, slurmd; as root, no systemd), cluster/lq-calibrate.sbatch runs a
# stories260K calibration through `sbatch`, and its output directory must equal, byte for
# byte, a direct `mpirun` run with the same flags. Also: the #SBATCH defaults reach the job; both
# launchers (srun with PMIx, mpirun inside the allocation) work; a failing lq-calibrate fails
# the job with its exit status; a job requeued mid-run (`scontrol requeue`) restarts, resumes
# from its store (measuring only what was left) and ends with the same bytes.
# Usage: cluster_slurm.sh LQ_CALIBRATE SHARED_DATA_DIR
set -u
calibrate="$1"
data="$2"
here="$(cd "$(dirname "$0")" && pwd)"
cluster="$(cd "$here/../cluster" && pwd)"
model="$data/llama2c-stories260K/stories260K.bin"
tok="$data/llama2c-stories260K/tok512.bin"
text="$data/tinystories/tinystories_val_a.txt"
test_start=$SECONDS
tmp="$(mktemp -d)"
# munged wants every directory above its socket searchable by all
chmod 755 "$tmp"
state="$tmp/slurm"
cleanup() { bash "$cluster/slurm-local.sh" stop "$state" >/dev/null 2>&1; rm -rf "$tmp"; }
trap cleanup EXIT
source "$here/cli_lib.sh"

# sbatch hands this environment to the jobs
mpi_test_env
export LQ_CALIBRATE="$calibrate"
# a job's wall-time limit in this test (an ASan build is several times slower than Release)
job_limit="${LQ_SLURM_TEST_JOB_TIMEOUT:-400}"

# what to look at when something fails: the daemons' logs and the job's output
show_logs() {
    echo "--- $state/log/slurmctld.log (last 30 lines)"; tail -30 "$state/log/slurmctld.log" 2>/dev/null
    for f in "$state"/log/slurmd.*.log; do echo "--- $f (last 30 lines)"; tail -30 "$f" 2>/dev/null; done
    [ -n "${1:-}" ] && { echo "--- job output $1 (last 40 lines)"; tail -40 "$1" 2>/dev/null; }
}
fatal() { fail "$1"; show_logs "${2:-}"; finish cluster_slurm; }

bash "$cluster/slurm-local.sh" --help | grep -q "start STATE_DIR" || fail "slurm-local.sh --help"
# outside a job the batch script explains itself, and refuses to run lq-calibrate
env -u SLURM_JOB_ID bash "$cluster/lq-calibrate.sbatch" --help | grep -q "#SBATCH --requeue" ||
    fail "lq-calibrate.sbatch --help outside a job"
expect "$cluster/lq-calibrate.sbatch" 2 "not inside a Slurm job" -- --model x
# two CPUs even on a one-CPU runner: the jobs run two ranks (the node takes the configured count)
cpus="$(nproc)"; [ "$cpus" -ge 2 ] || cpus=2
LQ_SLURM_CPUS="$cpus" bash "$cluster/slurm-local.sh" start "$state" ||
    fatal "slurm-local.sh start failed (slurm-wlm and munge are installed by tools/setup.sh)"
export SLURM_CONF="$state/slurm.conf"

job_field() { scontrol show job "$1" 2>/dev/null | grep -o "\b$2=[^ ]*" | head -1 | cut -d= -f2; }
# wait_job ID: polls until the job has ended, prints its final state; status 1 on timeout
wait_job() {
    local id="$1" deadline=$((SECONDS + job_limit)) st
    while [ "$SECONDS" -lt "$deadline" ]; do
        st="$(job_field "$id" JobState)"
        case "$st" in
            COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY|BOOT_FAIL|DEADLINE) echo "$st"; return 0 ;;
        esac
        sleep 1
    done
    echo "still ${st:-unknown} after $job_limit s"
    return 1
}
same_dir() { for f in config.json model.safetensors tokenizer.liftquant.json; do
    cmp -s "$1/$f" "$2/$f" || { fail "$3: $f differs between $1 and $2"; return; }; done; }
measured() { grep -o '[0-9]* results to measure' "$1" | cut -d' ' -f1; }

tail -c +100001 "$text" > "$tmp/calib.txt"
common=(--model "$model" --tokenizer "$tok" --calib "$tmp/calib.txt" --nsamples 8 --seqlen 128
        --steps 10 --configs 16/8,24/10,24/8 --ctx 256 --target-bits 4)

# ---- the reference: mpirun -n 2 outside Slurm ----------------------------------------------
mkdir -p "$tmp/direct"
t0=$SECONDS
mpirun --oversubscribe -n 2 "$calibrate" "${common[@]}" --db "$tmp/direct/store.db" --out "$tmp/direct/out" \
    >"$tmp/direct.out" 2>"$tmp/direct.err" || fatal "direct mpirun run: $(tail -5 "$tmp/direct.err")"
direct_s=$((SECONDS - t0))

# ---- through sbatch with the script's defaults (2 tasks; srun, since this Slurm has PMIx) --
mkdir -p "$tmp/j1"
t0=$SECONDS
job1="$(sbatch --parsable --chdir="$tmp" --output="$tmp/job1.out" "$cluster/lq-calibrate.sbatch" \
    "${common[@]}" --db "$tmp/j1/store.db" --out "$tmp/j1/out")" || fatal "sbatch refused the job: $job1"
st="$(wait_job "$job1")" || fatal "job $job1: $st" "$tmp/job1.out"
job1_s=$((SECONDS - t0))
[ "$st" = COMPLETED ] || fatal "job $job1 ended $st, exit $(job_field "$job1" ExitCode)" "$tmp/job1.out"
[ "$(job_field "$job1" ExitCode)" = 0:0 ] || fail "job $job1: ExitCode $(job_field "$job1" ExitCode)"
[ "$(job_field "$job1" JobName)" = lq-calibrate ] || fail "job name: $(job_field "$job1" JobName)"
[ "$(job_field "$job1" NumTasks)" = 2 ] || fail "#SBATCH --ntasks=2 not applied: NumTasks=$(job_field "$job1" NumTasks)"
[ "$(job_field "$job1" Requeue)" = 1 ] || fail "#SBATCH --requeue not applied"
grep -q "2 ranks, srun, restart 0," "$tmp/job1.out" || fail "job 1 did not launch with srun: $(head -3 "$tmp/job1.out")"
[ "$(measured "$tmp/job1.out")" = 105 ] || fail "job 1 should measure 35 linears x 3 configs: $(grep results "$tmp/job1.out")"
same_dir "$tmp/direct/out" "$tmp/j1/out" "sbatch (srun) against direct mpirun"

# ---- a failing lq-calibrate fails the job: with its status under mpirun; under srun with its
# status or 143, whichever rank srun saw end first (cluster/lq-calibrate.sbatch); a missing
# binary is the script's own error, 2
job2="$(sbatch --parsable --chdir="$tmp" --output="$tmp/job2.out" "$cluster/lq-calibrate.sbatch" \
    "${common[@]}" --db "$tmp/j2/store.db" --out "$tmp/no_such_dir/out")" || fatal "sbatch refused job 2"
job2m="$(LQ_LAUNCHER=mpirun sbatch --parsable --chdir="$tmp" --output="$tmp/job2m.out" \
    "$cluster/lq-calibrate.sbatch" "${common[@]}" --db "$tmp/j2/store.db" --out "$tmp/no_such_dir/out")" ||
    fatal "sbatch refused job 2 (mpirun)"
job3="$(LQ_CALIBRATE="$tmp/no-such-binary" sbatch --parsable --chdir="$tmp" --output="$tmp/job3.out" \
    "$cluster/lq-calibrate.sbatch" --help)" || fatal "sbatch refused job 3"
st="$(wait_job "$job2")" || fatal "job $job2: $st" "$tmp/job2.out"
code="$(job_field "$job2" ExitCode)"
{ [ "$st" = FAILED ] && { [ "$code" = 1:0 ] || [ "$code" = 143:0 ]; }; } ||
    fail "job $job2 (srun) with an unwritable --out: $st, ExitCode $code (want FAILED, 1:0 or 143:0)"
grep -q "no_such_dir is not a directory" "$tmp/job2.out" || fail "job 2's output lacks the error: $(tail -3 "$tmp/job2.out")"
st="$(wait_job "$job2m")" || fatal "job $job2m: $st" "$tmp/job2m.out"
[ "$st" = FAILED ] && [ "$(job_field "$job2m" ExitCode)" = 1:0 ] ||
    fail "job $job2m (mpirun) with an unwritable --out: $st, ExitCode $(job_field "$job2m" ExitCode) (want FAILED, 1:0)"
grep -q "no_such_dir is not a directory" "$tmp/job2m.out" || fail "job 2m's output lacks the error: $(tail -3 "$tmp/job2m.out")"
st="$(wait_job "$job3")" || fatal "job $job3: $st" "$tmp/job3.out"
[ "$st" = FAILED ] && [ "$(job_field "$job3" ExitCode)" = 2:0 ] ||
    fail "job $job3 with a missing LQ_CALIBRATE: $st, ExitCode $(job_field "$job3" ExitCode) (want FAILED, 2:0)"
grep -q "no-such-binary is not an executable file" "$tmp/job3.out" || fail "job 3's output: $(cat "$tmp/job3.out")"

# ---- requeued mid-run, launched by mpirun inside the allocation: resumes, same bytes --------
mkdir -p "$tmp/j4"
t0=$SECONDS
job4="$(LQ_LAUNCHER=mpirun sbatch --parsable --chdir="$tmp" --output="$tmp/job4.out" \
    "$cluster/lq-calibrate.sbatch" "${common[@]}" --db "$tmp/j4/store.db" --out "$tmp/j4/out")" ||
    fatal "sbatch refused job 4"
# requeue once 30 of the 105 results are in: the store holds them, the rest are still to come
deadline=$((SECONDS + job_limit))
until grep -q '^lq-calibrate: \[30/105\]' "$tmp/job4.out" 2>/dev/null; do
    st="$(job_field "$job4" JobState)"
    case "$st" in PENDING|RUNNING|CONFIGURING) ;; *) fatal "job $job4 ended ($st) before its 30th result" "$tmp/job4.out" ;; esac
    [ "$SECONDS" -lt "$deadline" ] || fatal "job $job4: no 30th result after $job_limit s" "$tmp/job4.out"
    sleep 0.2
done
scontrol requeue "$job4" || fatal "scontrol requeue $job4 failed" "$tmp/job4.out"
t_requeue=$SECONDS
# how long Slurm holds a requeued job back (AuthInfo cred_expire), for cluster/README.md
until [ "$(job_field "$job4" JobState)" = PENDING ]; do
    [ "$SECONDS" -lt "$deadline" ] || fatal "job $job4 never went back to PENDING after the requeue" "$tmp/job4.out"
    sleep 0.2
done
until [ "$(job_field "$job4" JobState)" != PENDING ]; do
    [ "$SECONDS" -lt "$deadline" ] || fatal "requeued job $job4 still pending after $job_limit s" "$tmp/job4.out"
    sleep 0.5
done
requeue_wait_s=$((SECONDS - t_requeue))
st="$(wait_job "$job4")" || fatal "requeued job $job4: $st" "$tmp/job4.out"
job4_s=$((SECONDS - t0))
[ "$st" = COMPLETED ] || fatal "requeued job $job4 ended $st, exit $(job_field "$job4" ExitCode)" "$tmp/job4.out"
[ "$(job_field "$job4" Restarts)" = 1 ] || fail "job $job4: Restarts=$(job_field "$job4" Restarts), want 1"
grep -q "mpirun, restart 0," "$tmp/job4.out" && grep -q "mpirun, restart 1 (resuming from the store)" "$tmp/job4.out" ||
    fail "job 4's output should log restart 0 and restart 1 (--open-mode=append): $(grep 'sbatch: job' "$tmp/job4.out")"
counts="$(measured "$tmp/job4.out" | tr '\n' ' ')"
set -- $counts
{ [ "$#" = 2 ] && [ "$1" = 105 ] && [ "$2" -gt 0 ] && [ "$2" -le 75 ]; } ||
    fail "the requeued job should measure 105, then at most the 75 left: got '$counts'"
same_dir "$tmp/direct/out" "$tmp/j4/out" "requeued sbatch (mpirun) against direct mpirun"

echo "cluster_slurm: direct mpirun ${direct_s} s, sbatch job ${job1_s} s, requeued job ${job4_s} s (restarted ${requeue_wait_s} s after the requeue), whole test $((SECONDS - test_start)) s"
[ "$failures" -ne 0 ] && show_logs
finish cluster_slurm
