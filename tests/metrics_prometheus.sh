#!/usr/bin/env bash
# overlap-echo --metrics against the real tools: `promtool check metrics` accepts what GET /metrics serves, and a
# real Prometheus server (a temporary config and data directory, loopback only, bounded in time) scrapes it and
# answers a query through its HTTP API with the counter this test drove: overlap_msgs_in_total after a known number
# of echoes. Also the 4xx answers and the size limit of the handler.
#
# promtool and prometheus come from Debian's prometheus package, which scripts/bootstrap installs; without them the
# test says so and exits 77 (meson: skipped).
set -euo pipefail

for tool in promtool prometheus python3; do
    command -v "$tool" >/dev/null || { echo "skipped: $tool is not installed (scripts/bootstrap installs it)"; exit 77; }
done
source "$(dirname "$0")/script_support.sh"

"$echo_bin" --host 127.0.0.1 --port 0 --threads 1 --metrics 127.0.0.1:0 "${backend_args[@]}" >"$work/echo.log" 2>&1 &
echo_pid=$!
pids+=("$echo_pid")
for _ in $(seq 100); do
    grep -q "^metrics on" "$work/echo.log" && break
    sleep 0.1
done
port=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$work/echo.log" | head -n1)
metrics=$(sed -n 's|^metrics on http://\(.*\)/metrics$|\1|p' "$work/echo.log" | head -n1)
[ -n "$port" ] && [ -n "$metrics" ] || { echo "FAIL: overlap-echo did not start:"; cat "$work/echo.log"; exit 1; }

# 137 echoes of 64 bytes on one connection: msgs_in counts receive completions, one per ping-pong message.
python3 - "$port" "$metrics" "$work" <<'EOF'
import socket, sys, time, urllib.request, urllib.error
port, metrics, work = int(sys.argv[1]), sys.argv[2], sys.argv[3]
s = socket.create_connection(("127.0.0.1", port), timeout=5)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
for i in range(137):
    msg = bytes([i % 256]) * 64
    s.sendall(msg)
    got = b""
    while len(got) < 64:
        part = s.recv(64 - len(got))
        assert part, "EOF"
        got += part
    assert got == msg
s.close()
body = urllib.request.urlopen(f"http://{metrics}/metrics", timeout=5)
assert body.status == 200 and body.headers["Content-Type"].startswith("text/plain; version=0.0.4"), body.headers
open(f"{work}/metrics.txt", "wb").write(body.read())
# What is not a scrape gets a clear 4xx, and the head is bounded.
host, mport = metrics.rsplit(":", 1)
def status(request):
    c = socket.create_connection((host, int(mport)), timeout=5)
    c.sendall(request)
    data = b""
    while True:
        part = c.recv(65536)
        if not part:
            break
        data += part
    c.close()
    return data.split(b"\r\n", 1)[0].decode()
for request, want in ((b"POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n", "405"), (b"GET /other HTTP/1.1\r\n\r\n", "404"),
                      (b"nonsense\r\n\r\n", "400"), (b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 5000 + b"\r\n\r\n", "431")):
    got = status(request)
    assert got.split(" ")[1] == want, f"{request[:30]!r}: {got}, want {want}"
# Clients that ask and then neither read nor close (more of them than the handler's 64 connections) are closed
# after 5 s: a scrape after that is answered.
import time
held = []
for _ in range(70):
    c = socket.create_connection((host, int(mport)), timeout=5)
    c.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    held.append(c)
time.sleep(6.5)
again = urllib.request.urlopen(f"http://{metrics}/metrics", timeout=5)
assert again.status == 200, again.status
for c in held:
    c.close()
print("echoes done; /metrics 200 and 405, 404, 400, 431 as expected; 70 clients that never read did not block it")
EOF

grep -q '^overlap_msgs_in_total 137$' "$work/metrics.txt" || {
    echo "FAIL: overlap_msgs_in_total is not 137:"; grep msgs_in "$work/metrics.txt"; exit 1; }
if ! promtool check metrics <"$work/metrics.txt" >"$work/promtool.txt" 2>&1; then
    echo "FAIL: promtool check metrics:"; cat "$work/promtool.txt"; exit 1
fi
echo "promtool check metrics: accepted ($(grep -c '^overlap_' "$work/metrics.txt") samples)"

# A real Prometheus scrapes it every second; its HTTP API must answer with the count.
prom_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$work/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: overlap-echo
    static_configs:
      - targets: ["$metrics"]
EOF
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/data" \
    --web.listen-address="127.0.0.1:$prom_port" >"$work/prometheus.log" 2>&1 &
pids+=("$!")
python3 - "$prom_port" <<'EOF'
import json, sys, time, urllib.parse, urllib.request
port = sys.argv[1]
query = urllib.parse.quote('overlap_msgs_in_total{job="overlap-echo"}')
deadline, last = time.time() + 40, None
while time.time() < deadline:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/query?query={query}", timeout=3) as r:
            last = json.load(r)
        result = last["data"]["result"]
        if result and result[0]["value"][1] == "137":
            print(f"prometheus scraped overlap-echo: overlap_msgs_in_total = {result[0]['value'][1]}")
            sys.exit(0)
    except OSError:
        pass
    time.sleep(0.5)
sys.exit(f"FAIL: Prometheus did not report overlap_msgs_in_total 137 within 40 s; last answer: {last}")
EOF
kill -TERM "$echo_pid"
wait "$echo_pid"
grep -q "overlap-echo: stopped" "$work/echo.log" || { echo "FAIL: no summary"; cat "$work/echo.log"; exit 1; }
echo "1 passed, 0 failed"
