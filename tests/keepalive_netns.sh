#!/usr/bin/env bash
# A peer that vanishes without a FIN or a reset (powered off, cable pulled) is reclaimed by TCP keepalive.
#
# Two network namespaces made here, joined by a veth pair on 192.0.2.0/24 (TEST-NET-1: nothing leaves them).
# overlap-echo listens in one; a client in the other connects, exchanges a message and keeps its socket open; then
# its end of the link goes down, so nothing it would answer (not even a reset) comes back. With --keepalive 1 the
# server must close the connection by itself (peer_timeouts 1, conns_open 0) within a generous bound; with
# --keepalive 0 (the old behaviour) it must still hold it after the same probes would have ended it.
#
# Needs root (namespaces); exits 77 (meson: skipped) with the reason where they cannot be made.
set -euo pipefail

source "$(dirname "$0")/script_support.sh"

tag=$$
ns_server=ovl-ka-s-$tag
ns_client=ovl-ka-c-$tag
link_server=ovks$tag
link_client=ovkc$tag
make_namespace "$ns_server"
make_namespace "$ns_client"
ip link add "$link_server" type veth peer name "$link_client"
ip link set "$link_server" netns "$ns_server"
ip link set "$link_client" netns "$ns_client"
ip -n "$ns_server" addr add 192.0.2.1/24 dev "$link_server"
ip -n "$ns_client" addr add 192.0.2.2/24 dev "$link_client"
ip -n "$ns_server" link set "$link_server" up
ip -n "$ns_client" link set "$link_client" up

# The newest complete JSON stats line's value for a key (a line still being written is skipped).
stat() {
    python3 - "$1" "$2" <<'PY'
import json, sys
for line in reversed(open(sys.argv[1]).read().splitlines()):
    if line.startswith("{"):
        try:
            print(json.loads(line)[sys.argv[2]])
            break
        except ValueError:
            continue
PY
}

# Wait (at most 5 s) until the newest stats line says KEY is VALUE.
wait_stat() {
    for _ in $(seq 50); do
        [ "$(stat "$work/server.log" "$1")" = "$2" ] && return 0
        sleep 0.1
    done
    echo "FAIL: $1 never became $2:"; tail -n 3 "$work/server.log"; exit 1
}

# run KEEPALIVE_SECONDS: start a server and a client, cut the client off; leaves the server's log in $work/server.log
run() {
    local keepalive=$1 port=27099
    : >"$work/server.log"
    ip netns exec "$ns_server" "$echo_bin" --host 192.0.2.1 --port "$port" --threads 1 --keepalive "$keepalive" \
        --stats 0.2 --stats-format json "${backend_args[@]}" >"$work/server.log" 2>&1 &
    server=$!
    pids+=("$server")
    for _ in $(seq 100); do
        grep -q "^listening on" "$work/server.log" && break
        sleep 0.1
    done
    grep -q "^listening on" "$work/server.log" || { echo "overlap-echo did not start:"; cat "$work/server.log"; exit 1; }
    # The client: one echo, then hold the socket open (no FIN, no reset) until it is killed.
    ip netns exec "$ns_client" python3 -c '
import socket, sys, time
s = socket.create_connection(("192.0.2.1", int(sys.argv[1])), timeout=5)
s.sendall(b"ping")
assert s.recv(4) == b"ping"
print("echoed", flush=True)
time.sleep(60)
' "$port" >"$work/client.log" 2>&1 &
    client=$!
    pids+=("$client")
    for _ in $(seq 50); do
        grep -q echoed "$work/client.log" && break
        sleep 0.1
    done
    grep -q echoed "$work/client.log" || { echo "the client got no echo:"; cat "$work/client.log"; exit 1; }
    # The server has counted it (a stats line from before the connection would say 0 open: not a reclaim).
    wait_stat conns_open 1
    # The peer vanishes: its link goes down, so nothing the server sends reaches it and nothing comes back.
    ip -n "$ns_client" link set "$link_client" down
}

stop() {
    kill -TERM "$server" "$client" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    wait "$client" 2>/dev/null || true
    ip -n "$ns_client" link set "$link_client" up
}

# Keepalive 1 s: probes from 1 s of silence, one a second, 3 unanswered: closed about 4 s after the last echo.
run ${KA:-1}
closed_after=""
for tenth in $(seq 150); do
    sleep 0.1
    if [ "$(stat "$work/server.log" conns_open)" = 0 ] && [ "$(stat "$work/server.log" peer_timeouts)" = 1 ]; then
        closed_after=$tenth
        break
    fi
done
timeouts=$(stat "$work/server.log" peer_timeouts)
if [ -z "$closed_after" ] || [ "$timeouts" != 1 ]; then
    echo "FAIL: with --keepalive 1 the vanished peer's connection was not reclaimed in 15 s" \
         "(conns_open $(stat "$work/server.log" conns_open), peer_timeouts $timeouts)"
    exit 1
fi
echo "with --keepalive 1: reclaimed $((closed_after / 10)).$((closed_after % 10)) s after the peer vanished," \
     "peer_timeouts $timeouts"
stop

# Keepalive off: nothing is ever sent, so the connection stays for ever (what the bug report saw).
run 0
sleep 6
open=$(stat "$work/server.log" conns_open)
if [ "$open" != 1 ]; then
    echo "FAIL: with --keepalive 0 the connection should still be open after 6 s (conns_open $open)"
    exit 1
fi
echo "with --keepalive 0: still open after 6 s (conns_open $open), as expected without probes"
stop
echo "1 passed, 0 failed"
