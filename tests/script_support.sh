# tests/script_support.sh - what the shell tests share; sourced, not run. It sets:
#   echo_bin, backend_args  overlap-echo ($OVERLAP_ECHO) and --backend $OVERLAP_TEST_BACKEND when that is set
#   work                    a temporary directory, removed at exit
#   pids                    processes the test started: add each one; they get SIGTERM and are reaped at exit
#   namespaces              network namespaces the test made (make_namespace adds them): deleted at exit
# and defines make_namespace NAME (root only; exits 77, which meson reports as skipped, with the reason otherwise).
echo_bin=${OVERLAP_ECHO:?OVERLAP_ECHO is not set (run through meson test)}
backend_args=()
[ -n "${OVERLAP_TEST_BACKEND:-}" ] && backend_args=(--backend "$OVERLAP_TEST_BACKEND")
work=$(mktemp -d)
pids=()
namespaces=()

script_cleanup() {
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    for ns in "${namespaces[@]}"; do
        ip netns del "$ns" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap script_cleanup EXIT

make_namespace() {
    if [ "$(id -u)" -ne 0 ]; then
        echo "skipped: network namespaces need root"
        exit 77
    fi
    if ! ip netns add "$1" 2>"$work/netns-error"; then
        echo "skipped: cannot create a network namespace: $(cat "$work/netns-error")"
        exit 77
    fi
    namespaces+=("$1")
    ip -n "$1" link set lo up
}
