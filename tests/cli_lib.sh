# Sourced by the CLI test scripts: a failure counter, `fail MESSAGE`,
# `expect TOOL STATUS PATTERN -- ARGS` (TOOL ARGS must exit with STATUS and print PATTERN on
# stderr) and `finish NAME` (the summary line and the script's exit status).
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

expect() {
    local tool="$1" want="$2" pattern="$3"
    shift 4
    local err
    err="$("$tool" "$@" 2>&1 >/dev/null)"
    local got=$?
    if [ "$got" -ne "$want" ] || ! grep -qF -- "$pattern" <<<"$err"; then
        fail "$(basename "$tool") $* -> status $got (want $want), stderr: $err"
    fi
}

finish() {
    if [ "$failures" -ne 0 ]; then
        echo "$1: $failures failure(s)"
        exit 1
    fi
    echo "$1: all checks passed"
}

# The environment of every test that runs lq-calibrate under mpirun: CI runs as root, which Open
# MPI refuses unless told; one BLAS/OpenMP thread per rank keeps several ranks from fighting
# over two cores; under the sanitizer build Open MPI's own leaks are suppressed (lsan_mpi.supp)
# and ours are not, with full stacks for every allocation (Open MPI and OpenBLAS lack frame
# pointers, and a one-frame stack would hide the library a leak belongs to).
mpi_test_env() {
    local here
    here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
    export OMP_WAIT_POLICY=passive
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 LQ_THREADS=1 OMP_NUM_THREADS=1
    export OPENBLAS_NUM_THREADS=1
    export OMPI_MCA_mca_base_component_disable_dlclose=1
    export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}fast_unwind_on_malloc=0"
    export LSAN_OPTIONS="suppressions=$here/lsan_mpi.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
}

# `mpi_timed N CMD ARGS...`: mpirun --oversubscribe -n N under a time limit (LQ_TEST_MPI_TIMEOUT
# seconds, default 300; one step takes seconds when the machine is idle). A hung or starved
# step then fails by itself, with a line on stderr naming the command and the script line that
# ran it, where it once only let ctest kill the whole test at its limit with no output at all.
mpi_timed() {
    local n="$1"; shift
    local limit="${LQ_TEST_MPI_TIMEOUT:-300}" status start=$SECONDS
    timeout -k 15 "$limit" mpirun --oversubscribe -n "$n" "$@"
    status=$?
    # 137 is also a SIGKILL from elsewhere (Open MPI's teardown has exited so): a timeout only
    # when the limit had passed
    if [ "$status" -eq 124 ] || { [ "$status" -eq 137 ] && [ $((SECONDS - start)) -ge "$limit" ]; }; then
        echo "TIMEOUT: 'mpirun -n $n $(basename "$1") ${*:2:4} ...' (script line ${BASH_LINENO[*]}) ran over $limit s and was killed" >&2
        echo "TIMEOUT: mpirun -n $n $(basename "$1"), script line ${BASH_LINENO[*]}, over $limit s" >>"${LQ_TEST_TIMEOUT_LOG:-/dev/null}"
    fi
    return "$status"
}
