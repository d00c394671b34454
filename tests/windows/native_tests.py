#!/usr/bin/env python3
"""native_tests.py - the engine, fault and service tests run natively against the built programs.

On Windows (.github/workflows/windows.yml) this drives overlap-echo.exe, overlap-load.exe and overlap-proxy.exe the
way tests/test_wine*.c drive them under Wine, with no Criterion (MSYS2 does not package it) and only the Python
standard library. The same file runs on Linux against build/ (meson test windows-native-driver), so that the
driver itself is exercised here; the Windows-only tests (the service) say so and are skipped there.

    native_tests.py --build-dir DIR [--exe] [--wrap wine] [--list] [TEST...]      (no TEST: every test)

--exe looks for NAME.exe (implied on Windows); --wrap starts every program through a command, so that on Linux
`--exe --wrap wine --build-dir build-win` runs the same tests on the Windows programs under Wine (the check of this
driver on the IOCP programs before the workflow ever ran).

Each test starts its own programs on ephemeral loopback ports, bounds every wait, and stops what it started by
its process handle. Exit status: 0 when every test named passed (or was skipped with its reason), 1 otherwise.
No test asserts a rate or a latency; times are printed for the reader (the refused loopback connect of issue 16
item 7 is one).
"""
import argparse
import json
import os
import queue
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request

WINDOWS = os.name == "nt"
START_TIMEOUT = 60.0
IO_TIMEOUT = 20.0
EXIT_TIMEOUT = 30.0


class Skip(Exception):
    """A test that cannot run here; its text says why."""


class Program:
    """A started program: its stdout and stderr lines are collected by threads, so nothing blocks on a pipe."""

    def __init__(self, argv):
        flags = subprocess.CREATE_NEW_PROCESS_GROUP if WINDOWS else 0
        self.argv = argv
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     creationflags=flags)
        self.lines = queue.Queue()
        self.out, self.err = [], []
        self.collectors = [threading.Thread(target=self._collect, args=(stream, store), daemon=True)
                           for stream, store in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))]
        for collector in self.collectors:
            collector.start()

    def _collect(self, stream, store):
        for line in stream:
            store.append(line)
            self.lines.put(line)

    def wait_line(self, pattern, timeout=START_TIMEOUT):
        """The first match of `pattern` in a line printed from now on, within timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.proc.poll() is not None and self.lines.empty():
                    break
                continue
            match = re.search(pattern, line)
            if match:
                return match
        raise AssertionError("%s printed no line matching %r within %.0f s (exit %s); stderr: %s" %
                             (os.path.basename(self.argv[0]), pattern, timeout, self.proc.poll(),
                              "".join(self.err)[-800:]))

    def interrupt(self):
        """Ctrl+Break on Windows (the programs treat it as Ctrl+C), SIGINT elsewhere."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.CTRL_BREAK_EVENT if WINDOWS else signal.SIGINT)

    def wait(self, timeout=EXIT_TIMEOUT):
        code = self.proc.wait(timeout=timeout)
        for collector in self.collectors:  # the last lines: each collector ends at its pipe's end
            collector.join(IO_TIMEOUT)
        return code

    def stop(self):
        """Interrupt, wait for the exit and the summary; returns stdout as one text."""
        self.interrupt()
        code = self.wait()
        text = "".join(self.out)
        assert code == 0, "%s exited %d; stderr: %s" % (self.argv[0], code, "".join(self.err)[-800:])
        assert ": stopped after" in text, "no summary in: %s" % text[-800:]
        return text

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=EXIT_TIMEOUT)


class Build:
    def __init__(self, build_dir, exe, wrap):
        suffix = ".exe" if exe or WINDOWS else ""
        self.wrap = wrap
        self.echo = os.path.join(build_dir, "overlap-echo" + suffix)
        self.load = os.path.join(build_dir, "bench", "overlap-load" + suffix)
        self.proxy = os.path.join(build_dir, "examples", "overlap-proxy" + suffix)
        # The IOCP check programs (tests/windows/), built only for Windows.
        self.check_dir = os.path.join(build_dir, "tests", "windows")
        self.suffix = suffix
        for path in (self.echo, self.load, self.proxy):
            if not os.path.isfile(path):
                raise SystemExit("native_tests: %s is missing: build first (meson setup DIR; ninja -C DIR)" % path)
        self.started = []

    def start(self, argv):
        program = Program(self.wrap + argv)
        self.started.append(program)
        return program

    def start_echo(self, *options, port=0, metrics=False):
        argv = [self.echo, "--host", "127.0.0.1", "--port", str(port), *options]
        if metrics:
            argv += ["--metrics", "127.0.0.1:0"]
        program = self.start(argv)
        program.port = int(program.wait_line(r"listening on 127\.0\.0\.1:(\d+)").group(1))
        if metrics:
            program.metrics = int(program.wait_line(r"metrics on http://127\.0\.0\.1:(\d+)").group(1))
        return program

    def start_proxy(self, upstream, *options, metrics=False):
        argv = [self.proxy, "--listen", "0", "--host", "127.0.0.1", "--to", "127.0.0.1:%d" % upstream, *options]
        if metrics:
            argv += ["--metrics", "127.0.0.1:0"]
        program = self.start(argv)
        program.port = int(program.wait_line(r"listening on 127\.0\.0\.1:(\d+)").group(1))
        if metrics:
            program.metrics = int(program.wait_line(r"metrics on http://127\.0\.0\.1:(\d+)").group(1))
        return program

    def run_load(self, port, *options, timeout=120):
        argv = [self.load, "127.0.0.1", "--port", str(port), "--json", *options]
        done = subprocess.run(self.wrap + argv, capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, "overlap-load exited %d: %s %s" % (done.returncode, done.stdout, done.stderr)
        return json.loads(done.stdout)

    def end_all(self):
        for program in self.started:
            program.kill()
        self.started = []


# ---- helpers ----

def connect(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT)
    s.settimeout(IO_TIMEOUT)
    return s


def pattern(seed, offset, length):
    return bytes(((seed * 131 + offset + i) * 2654435761 >> 7) & 0xFF for i in range(length))


def recv_exact(s, length):
    data = bytearray()
    while len(data) < length:
        chunk = s.recv(min(65536, length - len(data)))
        if not chunk:
            raise AssertionError("EOF after %d of %d bytes" % (len(data), length))
        data += chunk
    return bytes(data)


def exchange(s, seed, length):
    data = pattern(seed, 0, length)
    s.sendall(data)
    assert recv_exact(s, length) == data, "the echo differs (seed %d, %d bytes)" % (seed, length)


def wait_eof(s, timeout=IO_TIMEOUT):
    """Bytes read until EOF, within timeout."""
    s.settimeout(timeout)
    got = bytearray()
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return bytes(got)
        got += chunk


def close_reset(s):
    # struct linger is two ints on Linux, two u_shorts in Winsock.
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("HH" if WINDOWS else "ii", 1, 0))
    s.close()


def summary(text, label):
    match = re.search(r"%s (\d+)" % re.escape(label), text)
    assert match, "%r not in the summary: %s" % (label, text[-800:])
    return int(match.group(1))


def metrics(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=IO_TIMEOUT) as response:
        text = response.read().decode()
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^overlap_(\w+?)(?:_total)? (\d+)$", text, re.M)}


def time_wait_count(port):
    """Sockets on local port `port` in TIME_WAIT: netstat on Windows, /proc/net/tcp elsewhere."""
    if WINDOWS:  # "  TCP    127.0.0.1:50000    127.0.0.1:51234    TIME_WAIT"
        out = subprocess.run(["netstat", "-an", "-p", "tcp"], capture_output=True, text=True).stdout
        rows = (line.split() for line in out.splitlines())
        return sum(1 for f in rows if len(f) >= 4 and f[1].endswith(":%d" % port) and f[3] == "TIME_WAIT")
    count = 0
    with open("/proc/net/tcp") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            if int(fields[1].split(":")[1], 16) == port and fields[3] == "06":
                count += 1
    return count


# ---- the tests (TESTS below lists them; the workflow names the same list) ----

def echo_seed_flow(b):
    """One connection: messages of 1 B to 1 MiB come back exactly."""
    server = b.start_echo("--threads", "1")
    with connect(server.port) as s:
        for seed, length in enumerate((1, 64, 4096, 65536, 1 << 20)):
            exchange(s, seed, length)
    text = server.stop()
    assert summary(text, "errors") == 0, text


def echo_many_connections(b):
    """100 concurrent connections, 64 KiB each, on 2 workers; then Ctrl+Break ends it cleanly."""
    server = b.start_echo("--threads", "2")
    sockets = [connect(server.port) for _ in range(100)]
    failures = []

    def one(i, s):
        try:
            exchange(s, 100 + i, 65536)
        except Exception as e:  # reported below, with the connection's number
            failures.append("connection %d: %s" % (i, e))
    threads = [threading.Thread(target=one, args=(i, s)) for i, s in enumerate(sockets)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(IO_TIMEOUT * 2)
    for s in sockets:
        s.close()
    assert not failures, failures[:5]
    text = server.stop()
    assert summary(text, "accepted") == 100 and summary(text, "errors") == 0, text


def load_ping_pong(b):
    """overlap-load (the IOCP client) against overlap-echo: messages counted, no error of any kind."""
    server = b.start_echo("--threads", "2")
    result = b.run_load(server.port, "--connections", "10", "--duration", "2", "--warmup", "0.5")
    assert result["errors"]["total"] == 0 and result["msgs"] > 0, result["errors"]
    server.stop()


def churn_socket_reuse(b):
    """Short connections (overlap-load --churn): the reuse counters of both sides, reuse_wrong_role 0."""
    server = b.start_echo("--threads", "2", metrics=True)
    result = b.run_load(server.port, "--connections", "20", "--churn", "5", "--duration", "3", "--warmup", "0")
    counters = metrics(server.metrics)
    print("    server: reuse_ok %d, reuse_fallback %d, reuse_timeouts %d, reuse_wrong_role %d; client: %s" %
          (counters["reuse_ok"], counters["reuse_fallback"], counters["reuse_timeouts"],
           counters["reuse_wrong_role"], result.get("socket_reuse")))
    assert result["errors"]["total"] == 0, result["errors"]
    assert result["connects"] > 20, result["connects"]
    assert counters["reuse_wrong_role"] == 0 and counters["errors"] == 0, counters
    server.stop()


def proxy_forwards_and_reuses(b):
    """overlap-proxy in front of overlap-echo: a 1 MiB stream, then churn; reuse_wrong_role 0 on both."""
    server = b.start_echo("--threads", "1", metrics=True)
    proxy = b.start_proxy(server.port, "--threads", "1", metrics=True)
    with connect(proxy.port) as s:
        exchange(s, 7, 1 << 20)
    result = b.run_load(proxy.port, "--connections", "10", "--churn", "3", "--duration", "2", "--warmup", "0")
    assert result["errors"]["total"] == 0, result["errors"]
    for name, program in (("proxy", proxy), ("echo", server)):
        counters = metrics(program.metrics)
        print("    %s: reuse_ok %d, reuse_fallback %d, reuse_timeouts %d, reuse_wrong_role %d" %
              (name, counters["reuse_ok"], counters["reuse_fallback"], counters["reuse_timeouts"],
               counters["reuse_wrong_role"]))
        assert counters["reuse_wrong_role"] == 0 and counters["errors"] == 0, (name, counters)
    proxy.stop()
    server.stop()


def proxy_refused_upstream(b):
    """The upstream port is closed: the client's connection is closed. The time is printed: on Windows 10 1709
    and later it should be milliseconds (SIO_TCP_INITIAL_RTO), not the ~2 s of SYN retries (issue 16 item 7)."""
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    closed_port = holder.getsockname()[1]
    holder.close()  # bound, never listening: connects to it are refused
    proxy = b.start_proxy(closed_port, "--threads", "1", "--connect-timeout", "10")
    with connect(proxy.port) as s:
        start = time.monotonic()
        try:
            rest = wait_eof(s, timeout=15)
            assert rest == b"", rest
        except ConnectionResetError:
            pass
        took = time.monotonic() - start
    print("    refused loopback upstream: client closed after %.3f s" % took)
    proxy.stop()


def fault_resets_mid_stream(b):
    """Four clients reset mid-stream while another streams: that one is intact, summary errors 0."""
    server = b.start_echo("--threads", "2")
    keeper = connect(server.port)
    doomed = [connect(server.port) for _ in range(4)]
    for i, s in enumerate(doomed):
        s.sendall(pattern(i, 0, 256 * 1024))
    for s in doomed:
        close_reset(s)
    exchange(keeper, 9, 1 << 20)
    keeper.close()
    with connect(server.port) as s:
        exchange(s, 10, 100000)
    text = server.stop()
    assert summary(text, "errors") == 0, text


def fault_half_close(b):
    """The client's FIN first: 128 KiB sent and shut down before reading, all of it back, then EOF."""
    server = b.start_echo("--threads", "1")
    with connect(server.port) as s:
        data = pattern(3, 0, 128 * 1024)
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        assert wait_eof(s) == data, "the echo before EOF differs"
    server.stop()


def fault_idle_timeout(b):
    """--idle-timeout 1: a silent connection gets EOF; one exchanging every 200 ms stays open meanwhile."""
    server = b.start_echo("--threads", "1", "--idle-timeout", "1")
    idle, busy = connect(server.port), connect(server.port)
    start = time.monotonic()
    for i in range(10):
        exchange(busy, i, 100)
        time.sleep(0.2)
    assert wait_eof(idle, timeout=10) == b"", "data on the idle connection"
    print("    idle connection closed; the busy one still open after %.2f s" % (time.monotonic() - start))
    exchange(busy, 99, 100)
    idle.close()
    busy.close()
    text = server.stop()
    assert summary(text, "errors") == 0, text


def fault_flood_past_max_conns(b):
    """--max-conns 5: ten more connections are each closed, the five keep echoing."""
    server = b.start_echo("--threads", "1", "--max-conns", "5")
    held = [connect(server.port) for _ in range(5)]
    for i, s in enumerate(held):
        exchange(s, i, 100)
    for _ in range(10):
        with connect(server.port) as extra:
            try:
                assert wait_eof(extra, timeout=10) == b""
            except ConnectionResetError:
                pass
    for i, s in enumerate(held):
        exchange(s, 50 + i, 100)
        s.close()
    text = server.stop()
    assert summary(text, "refused") >= 10, text


def graceful_stop_drains(b):
    """Ctrl+Break with 5,000 bytes in flight: they come back, then EOF, and the server exits 0."""
    server = b.start_echo("--threads", "1")
    with connect(server.port) as s:
        exchange(s, 1, 1000)
        data = pattern(2, 0, 5000)
        s.sendall(data)
        time.sleep(0.2)
        server.interrupt()
        assert wait_eof(s) == data, "the bytes in flight did not all come back before EOF"
    assert server.wait() == 0, "".join(server.err)


def restart_with_time_wait(b):
    """Issue 16 item 9: a server that closed its connections first (the drain) is stopped and a new one binds the
    same port at once while they sit in TIME_WAIT; a second live server on that port is refused."""
    first = b.start_echo("--threads", "1")
    port = first.port
    sockets = [connect(port) for _ in range(8)]
    for i, s in enumerate(sockets):
        exchange(s, i, 300)
    first.interrupt()
    for s in sockets:
        assert wait_eof(s) == b""
        s.close()
    assert first.wait() == 0, "".join(first.err)
    waiting = time_wait_count(port)
    assert waiting > 0, "no TIME_WAIT socket on port %d: the test would prove nothing" % port
    second = b.start_echo("--threads", "1", port=port)
    with connect(port) as s:
        exchange(s, 77, 300)
    third = b.start(([b.echo, "--host", "127.0.0.1", "--port", str(port), "--threads", "1"]))
    code = third.wait(timeout=START_TIMEOUT)
    assert code != 0 and "bind" in "".join(third.err), "a second server bound the live port: %s" % third.err
    print("    restarted on port %d with %d sockets in TIME_WAIT; second server: %s" %
          (port, waiting, "".join(third.err).strip()))
    second.stop()


def paused_connection_notices_a_reset(b):
    """Issue 16: the library embedded (tests/windows/pause_check.c) pauses connections, their peers reset, and each
    ends with OVL_CLOSE_RESET within 10 s (the zero-byte watch); resumes, a FIN and a stop while paused still work."""
    run_check(b, "test-pause", "pause_check")


def run_check(b, program, mark, *args):
    """Runs the IOCP check program tests/windows/PROGRAM (the library embedded): it exits 0 and prints "MARK: ok"
    only if every one of its checks held."""
    path = os.path.join(b.check_dir, program + b.suffix)
    if not os.path.isfile(path):
        raise Skip("%s is built for Windows only (the IOCP backend)" % path)
    done = subprocess.run(b.wrap + [path] + list(args), capture_output=True, text=True, timeout=120)
    for line in done.stdout.splitlines():
        print("    " + line)
    assert done.returncode == 0 and ("%s: ok" % mark) in done.stdout, done.stderr[-1500:]


def post_runs_on_the_named_worker(b):
    """ovl_post on IOCP (tests/windows/post_check.c): posts run on their worker in order, hop between ports, and
    what never ran is run by ovl_engine_destroy."""
    run_check(b, "test-post", "post_check")


def accepts_while_worker_0_is_blocked(b):
    """Issue 16: the acceptor thread accepts and hands clients to worker 1 while worker 0 is blocked by a posted
    function (post_check.c blocked-worker): each of 6 clients is echoed within 10 s."""
    run_check(b, "test-post", "post_check", "blocked-worker")


def short_grace_gives_retiring_sockets_up(b):
    """A stop whose hard deadline comes before a retiring socket's 1 s give-up gives it up, not abandons it
    (tests/windows/retire_check.c)."""
    run_check(b, "test-retire", "retire_check")


def abandoned_connections_close_with_ecanceled(b):
    """Connections whose operations the stop abandoned hear on_close with -ECANCELED (tests/windows/abandon_check.c,
    swallow-cancels)."""
    run_check(b, "test-abandon", "abandon_check")


def service_install_start_stop(b):
    """Windows only, elevated: install as a service, sc start, echo, sc stop (drain), uninstall."""
    if not WINDOWS:
        raise Skip("the Service Control Manager is Windows only (tests/test_wine_service.c covers Wine)")
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    port = holder.getsockname()[1]
    holder.close()

    def run(*argv):
        return subprocess.run(list(argv), capture_output=True, text=True, timeout=120)
    # The service runs as its virtual account NT SERVICE\overlap-echo: it gets its own copy of the program and a
    # folder it may write its log to (docs/OPERATING.md), since the checkout may not be readable, nor the runner's
    # temp writable, for that account. The account exists once the service does: the grant follows the install.
    folder = os.path.join(os.environ.get("ProgramData", r"C:\ProgramData"), "overlap-echo-test")
    os.makedirs(folder, exist_ok=True)
    program = os.path.join(folder, "overlap-echo.exe")
    shutil.copyfile(b.echo, program)
    log = os.path.join(folder, "overlap-echo.log")
    if os.path.exists(log):
        os.remove(log)
    done = run(program, "install", "--start", "demand", "--host", "127.0.0.1", "--port", str(port), "--log-file", log)
    if done.returncode != 0 and "(error 5)" in done.stdout + done.stderr:
        raise Skip("not elevated: %s" % done.stderr.strip())
    assert done.returncode == 0, done.stdout + done.stderr
    try:
        done = run("icacls", folder, "/grant", r"NT SERVICE\overlap-echo:(OI)(CI)M")
        assert done.returncode == 0, "icacls: " + done.stdout + done.stderr
        done = run("sc", "start", "overlap-echo")
        assert done.returncode == 0, done.stdout + done.stderr
        deadline = time.monotonic() + START_TIMEOUT
        while "RUNNING" not in run("sc", "query", "overlap-echo").stdout:
            assert time.monotonic() < deadline, "the service did not reach RUNNING"
            time.sleep(0.5)
        with connect(port) as s:
            exchange(s, 5, 4096)
        run("sc", "stop", "overlap-echo")
        deadline = time.monotonic() + START_TIMEOUT
        while "STOPPED" not in run("sc", "query", "overlap-echo").stdout:
            assert time.monotonic() < deadline, "the service did not stop"
            time.sleep(0.5)
    finally:
        done = run(program, "uninstall")
    assert done.returncode == 0, done.stdout + done.stderr
    with open(log, errors="replace") as f:
        text = f.read()
    assert "overlap-echo: stopped after" in text, text[-800:]


TESTS = [echo_seed_flow, echo_many_connections, load_ping_pong, churn_socket_reuse, proxy_forwards_and_reuses,
         proxy_refused_upstream, fault_resets_mid_stream, fault_half_close, fault_idle_timeout,
         fault_flood_past_max_conns, graceful_stop_drains, restart_with_time_wait, paused_connection_notices_a_reset,
         post_runs_on_the_named_worker, accepts_while_worker_0_is_blocked, short_grace_gives_retiring_sockets_up,
         abandoned_connections_close_with_ecanceled, service_install_start_stop]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--build-dir", default="build")
    parser.add_argument("--exe", action="store_true", help="the programs are NAME.exe (implied on Windows)")
    parser.add_argument("--wrap", action="append", default=[], help="start every program through this command")
    parser.add_argument("--list", action="store_true", help="print the test names and exit")
    parser.add_argument("tests", nargs="*")
    args = parser.parse_args()
    by_name = {t.__name__: t for t in TESTS}
    if args.list:
        print("\n".join(by_name))
        return 0
    unknown = [name for name in args.tests if name not in by_name]
    if unknown:
        print("native_tests: no such test: %s (--list names them)" % ", ".join(unknown), file=sys.stderr)
        return 2
    build = Build(args.build_dir, args.exe, args.wrap)
    failed = []
    for name in args.tests or list(by_name):
        start = time.monotonic()
        print("[RUN ] %s" % name, flush=True)
        try:
            by_name[name](build)
            print("[PASS] %s (%.1f s)" % (name, time.monotonic() - start), flush=True)
        except Skip as reason:
            print("[SKIP] %s: %s" % (name, reason), flush=True)
        except Exception as e:  # one failing test does not stop the others
            failed.append(name)
            print("[FAIL] %s: %s: %s" % (name, type(e).__name__, e), flush=True)
        finally:
            build.end_all()
    print("%d tests, %d failed%s" % (len(args.tests or by_name), len(failed),
                                     (": " + ", ".join(failed)) if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
