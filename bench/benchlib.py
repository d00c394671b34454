"""bench/benchlib.py - what the Python benchmark drivers share (imported by bench/compare, bench/instructions,
bench/soak, bench/open-loop, bench/isolation and bench/c100k): the build's paths, bench/compare's workloads, its
peers built from Debian packages, starting servers on 127.0.0.1 and reading the port overlap-echo reports, a
process's VmRSS, and stopping servers, where only the processes a script started (`started`) are ever signalled.
"""
import gzip
import os
import re
import signal
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "build-compare")
ECHO = os.path.join(ROOT, "build", "overlap-echo")
LOAD = os.path.join(ROOT, "build", "bench", "overlap-load")
BASELINE_ECHO = None  # bench/compare --baseline: another build's overlap-echo, run as baseline-io_uring-t1 etc.

WORKLOADS = {
    "a": ("50 conns, 64 B ping-pong", ["--connections", "50", "--size", "64"]),
    "b": ("1000 conns, 64 B ping-pong", ["--connections", "1000", "--size", "64"]),
    "c": ("50 conns, 4 KiB, pipeline 8", ["--connections", "50", "--size", "4096", "--pipeline", "8"]),
    "d": ("1 conn, 64 B ping-pong", ["--connections", "1", "--size", "64"]),
    "e": ("50 conns, 64 B, churn every 10", ["--connections", "50", "--size", "64", "--churn", "10"]),
}

LISTENING = re.compile(r"listening on 127\.0\.0\.1:(\d+)")  # overlap-echo's line once it accepts, with its port

started = []  # PIDs this script started; only these are stopped


def workloads(ap, text):
    """The workload letters of TEXT (comma-separated), each checked against WORKLOADS; ArgumentParser AP's error
    (exit 2) names an unknown one."""
    wls = [w.strip() for w in text.split(",") if w.strip()]
    for w in wls:
        if w not in WORKLOADS:
            ap.error(f"unknown workload {w!r}")
    return wls


def require_build(prog):
    """Exits with PROG's message unless build/ has overlap-echo and overlap-load."""
    if not (os.access(ECHO, os.X_OK) and os.access(LOAD, os.X_OK)):
        sys.exit(f"{prog}: build first (scripts/build)")


def exit_on_signals():
    """SIGTERM and SIGHUP end the script through sys.exit (status 128 + the signal), so that its finally blocks stop
    the servers it started."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGHUP, lambda *_: sys.exit(129))


def stop(p, timeout=5):
    """SIGTERM to P, one of this script's own processes; SIGKILL if it has not exited TIMEOUT seconds later."""
    p.terminate()
    try:
        p.wait(timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def read_port(stream, deadline=None):
    """Reads overlap-echo's output STREAM up to its "listening on 127.0.0.1:PORT" line and returns PORT (an int);
    None if the stream ends first, or, with DEADLINE (a time.time()), if a line comes after it."""
    for line in stream:
        m = LISTENING.match(line)
        if m:
            return int(m.group(1))
        if deadline is not None and time.time() >= deadline:
            return None
    return None


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def stop_all(*_):
    for p in started:
        if p.poll() is None:
            stop(p)
    started.clear()


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def ensure_packages(packages=("libasio-dev", "libasio-doc", "g++")):
    need = [p for p in packages
            if subprocess.run(["dpkg-query", "-W", "-f=${Status}", p], capture_output=True, text=True)
            .stdout.strip() != "install ok installed"]
    if not need:
        return
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    log(f"compare: installing {' '.join(need)}")
    subprocess.run(sudo + ["apt-get", "update"], check=True)
    subprocess.run(sudo + ["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y"] + need, check=True)


def asio_source():
    """The cpp11 echo example, uncompressed into build-compare/ (Debian may ship it as .gz)."""
    base = "/usr/share/doc/libasio-dev/examples/cpp11/echo/async_tcp_echo_server.cpp"
    for path in (base, base + ".gz"):
        if os.path.exists(path):
            opener = gzip.open if path.endswith(".gz") else open
            with opener(path, "rt") as f:
                text = f.read()
            break
    else:
        sys.exit(f"compare: {base} not found (libasio-dev installed?)")
    # The only change: listen on 127.0.0.1 instead of every IPv4 interface (loopback traffic only).
    listen_any = "tcp::endpoint(tcp::v4(), port)"
    assert listen_any in text, "the Asio example changed; check asio_source()"
    text = text.replace(listen_any, 'tcp::endpoint(asio::ip::make_address("127.0.0.1"), port)')
    dst = os.path.join(OUT, "async_tcp_echo_server.cpp")
    with open(dst, "w") as f:
        f.write(text)
    return dst


def build_peers():
    os.makedirs(OUT, exist_ok=True)
    ensure_packages()
    src = asio_source()
    cmds = {
        "asio-epoll": ["g++", "-O2", "-o", os.path.join(OUT, "asio-epoll"), src, "-pthread"],
        "asio-io_uring": ["g++", "-O2", "-DASIO_HAS_IO_URING", "-DASIO_DISABLE_EPOLL",
                          "-o", os.path.join(OUT, "asio-io_uring"), src, "-pthread", "-luring"],
        "epoll_echo": ["gcc", "-O2", "-std=c11", "-Wall", "-Wextra", "-o", os.path.join(OUT, "epoll_echo"),
                       os.path.join(ROOT, "bench", "epoll_echo.c")],
        "uring_echo": ["gcc", "-O2", "-std=c11", "-Wall", "-Wextra", "-o", os.path.join(OUT, "uring_echo"),
                       os.path.join(ROOT, "bench", "uring_echo.c"), "-luring"],
        "spin_echo": ["gcc", "-O2", "-std=c11", "-Wall", "-Wextra", "-o", os.path.join(OUT, "spin_echo"),
                      os.path.join(ROOT, "bench", "spin_echo.c"), "-pthread"],
    }
    built = set()
    for name, cmd in cmds.items():
        log("compare: " + " ".join(cmd))
        r = subprocess.run(cmd)
        if r.returncode == 0:
            built.add(name)
        else:
            log(f"compare: building {name} failed; it is left out")
    return built


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(name, wrapper=(), overlap_args=(), start_timeout=5):
    """Starts server NAME on 127.0.0.1, under the command WRAPPER (a list, e.g. valgrind's) when given, with
    OVERLAP_ARGS added to overlap-echo's options; returns (Popen, port)."""
    if name.startswith("overlap-") or name.startswith("baseline-"):
        binary = BASELINE_ECHO if name.startswith("baseline-") else ECHO
        # "default": what a user runs first, no --threads and no --backend (docs/BENCHMARKS.md, "The default
        # worker count").
        backend, threads = {"io_uring-t1": ("io_uring", "1"), "epoll-t1": ("epoll", "1"),
                            "io_uring-t2": ("io_uring", "2"), "default": (None, None)}[name.split("-", 1)[1]]
        # Under a wrapper the port is picked here and probed by connecting: valgrind can hold overlap-echo's main
        # thread, which prints the port, until a connection wakes the worker blocked in io_uring_enter.
        port = free_port() if wrapper else None
        cmd = [binary, "--host", "127.0.0.1", "--port", str(port or 0)] + \
            (["--threads", threads, "--backend", backend] if threads else []) + list(overlap_args)
    else:
        port = free_port()
        cmd = [os.path.join(OUT, name), str(port)]
    logpath = os.path.join(OUT, f"{name}.log")
    logf = open(logpath, "w")
    p = subprocess.Popen(list(wrapper) + cmd, stdout=logf, stderr=subprocess.STDOUT, text=True)
    logf.close()
    started.append(p)
    deadline = time.time() + start_timeout
    if port is None:  # overlap-echo prints "listening on 127.0.0.1:PORT"
        while port is None:
            with open(logpath) as f:
                for line in f:
                    if line.startswith("listening on 127.0.0.1:"):
                        port = int(line.strip().rsplit(":", 1)[1])
            if port is None:
                if time.time() > deadline or p.poll() is not None:
                    raise RuntimeError(f"{name} did not report its port")
                time.sleep(0.05)
    else:
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline or p.poll() is not None:
                    raise RuntimeError(f"{name} is not listening on {port}")
                time.sleep(0.05)
    return p, port


def start_server_retrying(name, **options):
    """start_server, up to three tries: a port free_port() saw may be taken by a client's ephemeral port meanwhile."""
    for attempt in range(3):
        try:
            return start_server(name, **options)
        except RuntimeError:
            stop_all()
            if attempt == 2:
                raise
