#!/usr/bin/env bash
# systemd socket activation, with systemd's own activator (systemd-socket-activate, from Debian's systemd package):
# it binds and listens, then starts overlap-echo with the socket in LISTEN_FDS when the first client connects.
# overlap-echo must serve that client on the passed socket (it binds nothing itself, --port is ignored), say so, and
# stop cleanly on SIGTERM. contrib/overlap-echo.socket must pass systemd-analyze verify.
set -euo pipefail

command -v systemd-socket-activate >/dev/null || { echo "skipped: systemd-socket-activate is not installed"; exit 77; }
source "$(dirname "$0")/script_support.sh"
source_root=$(cd "$(dirname "$0")/.." && pwd)

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# --port 1 is ignored: it prints the passed socket's address and binds nothing of its own.
systemd-socket-activate -l "127.0.0.1:$port" "$echo_bin" --port 1 --threads 1 >"$work/echo.log" 2>&1 &
activator=$!
pids+=("$activator")
python3 - "$port" <<'PY'
import socket, sys, time
port = int(sys.argv[1])
deadline = time.time() + 10
while True:
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        break
    except OSError:
        if time.time() > deadline:
            raise
        time.sleep(0.05)
for i in range(50):
    msg = b"activated %03d" % i
    s.sendall(msg)
    got = b""
    while len(got) < len(msg):
        part = s.recv(64)
        assert part, "EOF"
        got += part
    assert got == msg, got
s.close()
print("50 echoes through the activated socket")
PY
for _ in $(seq 50); do
    grep -q "socket activation" "$work/echo.log" && break
    sleep 0.1
done
grep -q "overlap-echo: 1 listening socket from the service manager (socket activation)" "$work/echo.log" || {
    echo "FAIL: overlap-echo did not take the passed socket:"; cat "$work/echo.log"; exit 1; }
grep -q "^listening on 127.0.0.1:$port$" "$work/echo.log" || { echo "FAIL:"; cat "$work/echo.log"; exit 1; }
kill -TERM "$activator"
status=0
wait "$activator" || status=$?
[ "$status" -eq 0 ] || { echo "FAIL: exit $status"; cat "$work/echo.log"; exit 1; }
grep -q "overlap-echo: stopped after .* accepted 1," "$work/echo.log" || { echo "FAIL:"; cat "$work/echo.log"; exit 1; }
# The unit, beside the service meson generated from contrib/overlap-echo.service.in (systemd-analyze loads both).
service="$(dirname "$echo_bin")/overlap-echo.service"
if command -v systemd-analyze >/dev/null && [ -f "$service" ]; then
    mkdir "$work/units"
    cp "$source_root/contrib/overlap-echo.socket" "$service" "$work/units/"
    # It exits 0 on an unknown key and only warns: any output is a failure too.
    if ! systemd-analyze verify --man=no "$work/units/overlap-echo.socket" >"$work/verify.txt" 2>&1 ||
        [ -s "$work/verify.txt" ]; then
        echo "FAIL: systemd-analyze verify contrib/overlap-echo.socket:"; cat "$work/verify.txt"; exit 1
    fi
fi
echo "1 passed, 0 failed"
