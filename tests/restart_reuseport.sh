#!/usr/bin/env bash
# A restart that refuses nothing: overlap-echo --reuse-port, a second process started on the same port, then the
# first one stopped (SIGTERM: it closes its listening socket at once, then drains), while overlap-load --churn opens
# a new connection every few echoes through all of it. No connect error, no wrong byte, no short echo, no reset; the
# old process's summary shows its drain and bytes in == bytes out. Connections the old process was serving end with
# its FIN after the echoes of what it had read; a message the client sent after the stop crosses that FIN and comes
# back short (overlap-load: short_echo, at most one per connection): that is the drain, not a loss.
#
# In a network namespace of its own (root; skipped with the reason otherwise), with net.ipv4.tcp_migrate_req=1 there:
# connections still queued on the old listener when it closes move to the new one instead of being reset (Linux
# 5.14+). Under socket activation systemd keeps the socket across the restart (docs/OPERATING.md).
set -euo pipefail

source "$(dirname "$0")/script_support.sh"
load_bin=${OVERLAP_LOAD:?OVERLAP_LOAD is not set (run through meson test)}
ns=ovl-rp-$$
make_namespace "$ns"
if ! ip netns exec "$ns" sysctl -q -w net.ipv4.tcp_migrate_req=1 2>"$work/err"; then
    echo "skipped: net.ipv4.tcp_migrate_req is not there (Linux 5.14+): $(cat "$work/err")"
    exit 77
fi
port=27015

start_echo() { # LOG: a server on $port in the namespace; its PID in $started
    ip netns exec "$ns" "$echo_bin" --host 127.0.0.1 --port "$port" --threads 1 --reuse-port --drain-timeout 5 \
        "${backend_args[@]}" >"$1" 2>&1 &
    started=$!
    pids+=("$started")
    for _ in $(seq 100); do
        grep -q "^listening on" "$1" && break
        sleep 0.05
    done
    grep -q "^listening on" "$1" || { echo "FAIL: overlap-echo did not start:" >&2; cat "$1" >&2; exit 1; }
}

start_echo "$work/old.log"
old=$started
ip netns exec "$ns" "$load_bin" 127.0.0.1 --port "$port" --connections 20 --churn 10 --duration 5 --warmup 0 \
    --json >"$work/load.json" 2>"$work/load.err" &
load=$!
pids+=("$load")
sleep 1.5
start_echo "$work/new.log"
new=$started
sleep 0.5
kill -TERM "$old"
status=0
wait "$old" || status=$?
[ "$status" -eq 0 ] || { echo "FAIL: the old overlap-echo exited with $status"; cat "$work/old.log"; exit 1; }
wait "$load" || true
kill -TERM "$new"
wait "$new" || true
# The namespace's own TCP counters: what the kernel did with the connections queued on the old listener (moved,
# or not) and every reset it sent, beside what the processes and the client counted.
ip netns exec "$ns" nstat -as >"$work/nstat" 2>&1 || true

python3 - "$work/load.json" "$work/old.log" "$work/new.log" "$work/nstat" <<'EOF'
import json, re, sys
load = json.load(open(sys.argv[1]))
old, new = open(sys.argv[2]).read(), open(sys.argv[3]).read()
kernel = {}
for line in open(sys.argv[4]):
    f = line.split()
    if len(f) >= 2 and f[1].isdigit():
        kernel[f[0]] = int(f[1])
shown = ("TcpExtTCPMigrateReqSuccess", "TcpExtTCPMigrateReqFailure", "TcpOutRsts", "TcpAttemptFails",
         "TcpEstabResets", "TcpExtListenOverflows", "TcpExtListenDrops", "TcpExtTCPAbortOnClose",
         "TcpExtTCPAbortOnData", "TcpExtTCPReqQFullDrop")
print("kernel (namespace): " + ", ".join(f"{k[len('TcpExt') if k.startswith('TcpExt') else 3:]} {kernel.get(k, 0)}"
                                          for k in shown))
errors = load["errors"]
def accepted(log):
    m = re.search(r"stopped after .*: accepted (\d+),", log)
    return int(m.group(1)) if m else -1
summary = re.search(r"overlap-echo: stopped.*", old)
print(f"through the restart: {load.get('connects')} connects, {load.get('msgs')} messages verified; errors {errors}; "
      f"old process accepted {accepted(old)}, new one {accepted(new)}")
print(f"old process: {summary.group(0) if summary else 'no summary'}")
bad = {k: errors[k] for k in ("connect", "mismatch", "reset", "io") if errors.get(k)}
assert not bad, f"errors through the restart: {bad}; first: {load.get('first_error')}"
# A connection the old process was serving ends with its FIN after the echoes of what it had read; a message the
# client sent after the stop began crossed that FIN (short_echo), or none did (server_closed): one per connection
# at most, 20 connections.
ended = errors.get("short_echo", 0) + errors.get("server_closed", 0)
assert ended <= 20, f"{ended} connections ended by the old process's drain, more than the 20 open"
assert summary, "the old process printed no summary (its drain)"
assert accepted(old) > 0 and accepted(new) > 0, "both processes should have served connections"
m = re.search(r"bytes in (\d+), bytes out (\d+)", old)
assert m and m.group(1) == m.group(2), f"the old process read and did not echo: {summary.group(0)}"
print("1 passed, 0 failed")
EOF
