#!/usr/bin/env python3
"""overlap-load --start-at and --share against a loopback echo server of this test that notes, per connection,
when it was accepted and when its first byte came (wall clock, the clock --start-at is given in).

Behaviour only: the assertions are lower bounds a busy machine cannot break (nothing arrives before the agreed
time, a generator's share of the schedule never runs ahead of it), never a rate, a duration or a latency it must
reach. Every process started here is ended here, by its PID."""
import json, os, socket, subprocess, sys, threading, time

load = os.environ.get("OVERLAP_LOAD")
if not load:
    sys.exit("OVERLAP_LOAD is not set (run through meson test)")


class Server:
    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.connections = []  # [accepted_at, first_byte_at or None]
        self.stopping = False
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            record = [time.time(), None]
            with self.lock:
                self.connections.append(record)
            threading.Thread(target=self.echo, args=(conn, record), daemon=True).start()

    def echo(self, conn, record):
        with conn:
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                if record[1] is None:
                    record[1] = time.time()
                conn.sendall(data)

    def close(self):
        self.stopping = True
        self.sock.close()


def run(args, timeout=60):
    proc = subprocess.Popen([load] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        sys.exit(f"FAIL: overlap-load {' '.join(args)} did not finish in {timeout} s")
    if proc.returncode != 0:
        sys.exit(f"FAIL: overlap-load {' '.join(args)} exited {proc.returncode}:\n{out}\n{err}")
    return json.loads(out), err


# Closed loop: connected early, silent until the start.
server = Server()
start = round(time.time() + 1.5, 3)
report, err = run(["127.0.0.1", "--port", str(server.port), "--connections", "2", "--duration", "0.3",
                   "--warmup", "0", "--start-at", f"{start:.3f}", "--json"])
with server.lock:
    seen = [list(c) for c in server.connections]
assert len(seen) == 2, seen
for accepted, first in seen:
    assert first is not None, "a connection sent nothing"
    # 5 ms for the two clocks' conversion; a busy machine can only make the first byte later.
    assert first >= start - 0.005, f"a first byte came {start - first:.3f} s before --start-at"
    assert accepted <= first
assert report["config"]["start_at"] == start and report["start_wait_s"] >= 0 and report["msgs"] > 0, report
assert report["config"]["share"] is None and report["intended_rate"] == 0, report
print(f"closed loop: first bytes {[round(f - start, 4) for _, f in seen]} s after --start-at, "
      f"waited {report['start_wait_s']:.3f} s with the connections open")
server.close()

# Open loop, generator 2 of 4 sharing 400 msgs/s: its part is 100 msgs/s from 1/400 s after the start.
server = Server()
start = round(time.time() + 1.5, 3)
report, err = run(["127.0.0.1", "--port", str(server.port), "--connections", "2", "--duration", "0.5",
                   "--warmup", "0", "--rate", "400", "--share", "2/4", "--start-at", f"{start:.3f}", "--json"])
with server.lock:
    seen = [list(c) for c in server.connections]
firsts = [f for _, f in seen if f is not None]
assert firsts, seen
assert min(firsts) >= start + 1 / 400 - 0.005, f"generator 2/4 sent {start + 1 / 400 - min(firsts):.4f} s early"
assert report["config"]["share"] == "2/4" and report["config"]["total_rate"] == 400, report["config"]
assert report["intended_rate"] == 100 and report["config"]["rate"] == 100, report
# Never ahead of its schedule: 100 msgs/s over the window (plus one in flight per connection).
bound = 100 * report["seconds"] + 2 + 1
assert 0 < report["msgs"] <= bound, f"{report['msgs']} messages, the schedule allows {bound:.0f}"
assert report["achieved_rate"] == report["msgs_per_s"], report
assert "intended 100 msgs/s, achieved" in err and "share 2/4 of 400" in err, err
print(f"share 2/4 of 400 msgs/s: first byte {min(firsts) - start:.4f} s after the start, intended "
      f"{report['intended_rate']:.0f}, achieved {report['achieved_rate']:.1f} msgs/s")
server.close()

# A time that has passed: the run starts at once and says how late.
server = Server()
report, err = run(["127.0.0.1", "--port", str(server.port), "--connections", "1", "--duration", "0.2",
                   "--warmup", "0", "--start-at", f"{time.time() - 5:.3f}", "--json"])
assert report["start_late_s"] >= 5 and "had passed" in err, (report, err)
server.close()
print("--start-at and --share behave")
