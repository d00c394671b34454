#!/usr/bin/env python3
"""A restart under socket activation refuses nothing: this script plays systemd's part. It binds and listens on
127.0.0.1, starts overlap-echo with the socket as fd 3 (LISTEN_FDS=1, LISTEN_PID = the child's own PID, as
sd_listen_fds wants), and while overlap-load --churn opens a new connection every 10 echoes, restarts it the way
`systemctl restart` does: SIGTERM the old process, wait for it to exit (its drain), start a new one on the same
socket. The socket never closes, so connections that arrive in between wait in its backlog: no connect error, no
wrong byte, no reset, and both processes served connections.

Environment: OVERLAP_ECHO, OVERLAP_LOAD (meson sets them). Prints 'N passed, N failed'; exit 0 or 1.
"""
import json, os, re, signal, socket, subprocess, sys, tempfile, time

ECHO = os.environ["OVERLAP_ECHO"]
LOAD = os.environ["OVERLAP_LOAD"]


def start_activated(listener, log_path):
    """fork, put the listening socket on fd 3, set LISTEN_FDS/LISTEN_PID for the child itself, exec overlap-echo."""
    log = open(log_path, "w")
    pid = os.fork()
    if pid == 0:
        try:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            os.dup2(listener.fileno(), 3)
            os.set_inheritable(3, True)
            env = dict(os.environ, LISTEN_FDS="1", LISTEN_PID=str(os.getpid()))
            os.execve(ECHO, [ECHO, "--threads", "1", "--port", "1", "--drain-timeout", "5"], env)
        finally:
            os._exit(127)
    log.close()
    deadline = time.time() + 10
    while time.time() < deadline:
        if "socket activation" in open(log_path).read():
            return pid
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    sys.exit(f"FAIL: overlap-echo did not take the socket: {open(log_path).read()}")


def main():
    work = tempfile.mkdtemp()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4096)
    port = listener.getsockname()[1]
    children = []
    load = None
    try:
        old = start_activated(listener, f"{work}/old.log")
        children.append(old)
        load = subprocess.Popen([LOAD, "127.0.0.1", "--port", str(port), "--connections", "20", "--churn", "10",
                                 "--duration", "5", "--warmup", "0", "--json"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        time.sleep(1.5)
        os.kill(old, signal.SIGTERM)            # systemctl restart: stop the old process, wait for it...
        _, status = os.waitpid(old, 0)
        children.remove(old)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, f"old process: status {status}"
        new = start_activated(listener, f"{work}/new.log")   # ...then start the new one on the same socket
        children.append(new)
        out, err = load.communicate(timeout=60)
        load = None
        os.kill(new, signal.SIGTERM)
        os.waitpid(new, 0)
        children.remove(new)
        result = json.loads(out)
        old_log, new_log = open(f"{work}/old.log").read(), open(f"{work}/new.log").read()
        errors = result["errors"]
        accepted = [int(m.group(1)) if m else -1 for m in
                    (re.search(r"stopped after .*: accepted (\d+),", text) for text in (old_log, new_log))]
        print(f"through the restart: {result.get('connects')} connects, {result.get('msgs')} verified messages; "
              f"errors {errors}; accepted by the old process {accepted[0]}, the new one {accepted[1]}")
        bad = {k: errors[k] for k in ("connect", "mismatch", "reset", "io") if errors.get(k)}
        assert not bad, f"errors through the restart: {bad}; first: {result.get('first_error')}"
        # The old process's connections end with its FIN after their echoes; a message that crossed it comes back
        # short: at most one per connection.
        assert errors.get("short_echo", 0) + errors.get("server_closed", 0) <= 20, errors
        assert accepted[0] > 0 and accepted[1] > 0, f"both processes should have served: {accepted}"
        m = re.search(r"bytes in (\d+), bytes out (\d+)", old_log)
        assert m and m.group(1) == m.group(2), f"the old process read and did not echo: {old_log}"
        print("1 passed, 0 failed")
    except AssertionError as failure:
        print(f"FAIL: {failure}")
        print("0 passed, 1 failed")
        return 1
    finally:
        if load:
            load.kill()
            load.wait()
        for pid in children:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        listener.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
