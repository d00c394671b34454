#!/usr/bin/env bash
# Timers inside a time namespace (unshare --time, Linux 5.6): there CLOCK_MONOTONIC is offset from the host's, and a
# kernel deadline given as an absolute time may be read in the host's clock (io_uring's IORING_TIMEOUT_ABS is).
# A worker that armed its standing timeout that way spun at 100% of a CPU with nothing to do when the namespace ran
# 5 s behind the host (every deadline already past), and fired its timers 5 s late when it ran 5 s ahead.
#
# overlap-echo runs in a namespace 5 s behind the host, then in one 5 s ahead, with --idle-timeout 0.5: idle, it
# must cost next to no CPU (at most 30 of 100 ticks in a second; the spin took all of them), and it must close an
# idle connection well before 5 s (the timeout sweep runs every 125 ms, so it comes after about 0.6 s).
#
# Exits 77 (meson: skipped) with the reason where a time namespace cannot be made.
set -euo pipefail

source "$(dirname "$0")/script_support.sh"

# Root makes the namespace as it is; anyone else (or a root whose container refuses it) inside a user namespace.
ns_args=()
if ! unshare --time --monotonic=5 --fork true 2>"$work/unshare-error"; then
    ns_args=(--user --map-root-user)
    if ! unshare "${ns_args[@]}" --time --monotonic=5 --fork true 2>>"$work/unshare-error"; then
        echo "skipped: cannot make a time namespace: $(tr '\n' ' ' <"$work/unshare-error")"
        exit 77
    fi
fi

# run OFFSET: one server in a namespace OFFSET seconds from the host's monotonic clock, checked as above.
run() {
    local offset=$1 port="" server=""
    : >"$work/server.log"
    # The server is unshare's child, inside the namespace (unshare itself ignores SIGTERM while it waits for it;
    # --kill-child takes the server along if unshare is killed otherwise).
    unshare "${ns_args[@]}" --time --monotonic="$offset" --fork --kill-child=TERM \
        "$echo_bin" --host 127.0.0.1 --port 0 --threads 1 --idle-timeout 0.5 "${backend_args[@]}" \
        >"$work/server.log" 2>&1 &
    pids+=("$!")
    local wrapper=$!
    for _ in $(seq 100); do
        port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$work/server.log" | head -n 1)
        [ -n "$port" ] && break
        sleep 0.05
    done
    [ -n "$port" ] || { echo "FAIL: offset $offset: no listening line:"; cat "$work/server.log"; exit 1; }
    server=$(awk -v parent="$wrapper" '$4 == parent { print $1 }' /proc/[0-9]*/stat 2>/dev/null | head -n 1)
    [ -n "$server" ] || { echo "FAIL: offset $offset: no server process under unshare $wrapper"; exit 1; }
    pids+=("$server")

    # The idle connection is closed by the server, long before 5 s.
    python3 - "$port" "$offset" <<'PY'
import socket, sys, time
port, offset = int(sys.argv[1]), sys.argv[2]
s = socket.create_connection(("127.0.0.1", port), timeout=5)
s.settimeout(5)
start = time.monotonic()
try:
    data = s.recv(1)
except socket.timeout:
    sys.exit(f"FAIL: offset {offset}: an idle connection was still open after 5 s (--idle-timeout 0.5)")
elapsed = time.monotonic() - start
if data:
    sys.exit(f"FAIL: offset {offset}: the server sent {data!r} on an idle connection")
if elapsed >= 4:
    sys.exit(f"FAIL: offset {offset}: the idle connection was closed after {elapsed:.2f} s (--idle-timeout 0.5)")
print(f"offset {offset}: the idle connection was closed after {elapsed:.2f} s")
PY

    # Idle, it sleeps: CPU ticks (utime + stime, 100 a second) over one second.
    local before after
    before=$(awk '{print $14 + $15}' "/proc/$server/stat")
    sleep 1
    after=$(awk '{print $14 + $15}' "/proc/$server/stat")
    echo "offset $offset: $((after - before)) CPU ticks in 1 s idle"
    if [ $((after - before)) -gt 30 ]; then
        echo "FAIL: offset $offset: the idle server used $((after - before)) of 100 CPU ticks in a second"
        exit 1
    fi
    kill -TERM "$server"
    # The stop is bounded (an idle server, --drain-timeout 5): a server still there after 15 s is a failure that
    # says where it is, not a test killed by meson's timeout with nothing to show (CI saw that once, unexplained).
    for _ in $(seq 300); do
        kill -0 "$wrapper" 2>/dev/null || break
        sleep 0.05
    done
    if kill -0 "$wrapper" 2>/dev/null; then
        echo "FAIL: offset $offset: overlap-echo (pid $server) still running 15 s after SIGTERM; its log:"
        cat "$work/server.log"
        for task in /proc/"$server"/task/*; do
            echo "thread ${task##*/}: state $(awk '{print $3}' "$task/stat" 2>/dev/null)," \
                "wchan $(cat "$task/wchan" 2>/dev/null)"
        done
        kill -KILL "$server" 2>/dev/null || true # unshare waits for it, and the cleanup waits for unshare
        exit 1
    fi
    wait "$wrapper" 2>/dev/null || true
}

run -5
run 5
echo "ok: timers fire on time and an idle worker sleeps, 5 s behind and 5 s ahead of the host's clock"
