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
