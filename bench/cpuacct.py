"""bench/cpuacct.py - three accountings of CPU time around a load run (imported by bench/compare and
bench/cpu-per-message; `python3 bench/cpuacct.py PID` prints one snapshot as JSON).

  stat     the process's utime+stime from /proc/PID/stat, in clock ticks (USER_HZ, 10 ms). The kernel splits a
           sampled tick count into user and system, then scales the pair so that its sum is the process's
           scheduler runtime (cputime_adjust), so the sum is the sched figure below truncated to whole ticks.
  sched    the scheduler's runtime (se.sum_exec_runtime, nanoseconds on CPU) summed over every thread of the
           process, the threads that exited included. /proc/PID/schedstat is the thread-group leader's alone (the
           main thread: 0 for overlap-echo, whose workers are other threads); /proc/PID/task/TID/schedstat holds each
           live thread's, and an exited thread's runtime moves into the process's total, which only the process's
           CPU clock (clock_getcpuclockid(pid), what CLOCK_PROCESS_CPUTIME_ID reads for the caller) reports. So
           `sched` is that clock; the sum over /proc/PID/task/*/schedstat is kept next to it as the check, and the
           threads that were in the first reading and not in the second are counted.
  machine  every CPU's busy time from /proc/stat (user+nice+system+irq+softirq+steal; idle and iowait left out;
           guest time is already inside user and nice), whoever ran: the server, the client, ksoftirqd, softirqs
           taken while a CPU idled, and anything else on the machine.

Whether a softirq that runs in a task's context (on loopback the sender's transmit runs the receiver's TCP input
at local_bh_enable) is in that task's runtime depends on CONFIG_IRQ_TIME_ACCOUNTING: without it (this VM's kernel)
it is, so `stat` and `sched` both include it; with it, neither does, and only `machine` sees it. kernel_info()
records which. The per-process figures are exact for what they count; they differ between servers partly by how
much of the *peer's* receive work runs in their context. `machine` has no such ambiguity but counts everything
else that ran too: it is meaningful on a quiet machine only.
"""
import glob
import gzip
import json
import os
import sys
import time

HZ = os.sysconf("SC_CLK_TCK")


def _process_clock_id(pid):
    # glibc's clock_getcpuclockid(): MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED) = (~pid << 3) | 2. The kernel lets
    # any process read another's CPU clock (no ptrace check for clock_gettime).
    return ((~pid) << 3) | 2


def process_sched_ns(pid):
    """Nanoseconds on CPU of every thread of PID, exited threads included (None if the clock cannot be read)."""
    try:
        return time.clock_gettime_ns(_process_clock_id(pid))
    except OSError:
        return None


def threads_sched_ns(pid):
    """{tid: ns on CPU} from /proc/PID/task/*/schedstat (the first field), for the threads alive now."""
    out = {}
    for path in glob.glob(f"/proc/{pid}/task/*/schedstat"):
        try:
            with open(path) as f:
                out[int(path.split("/")[4])] = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass  # the thread exited between the listing and the read
    return out


def proc_stat_ticks(pid):
    """(utime, stime) of PID from /proc/PID/stat, in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]), int(fields[12])  # fields 14 and 15


def machine_ticks():
    """(busy, idle, softirq, cpus) from the aggregate line of /proc/stat, in clock ticks."""
    with open("/proc/stat") as f:
        lines = f.read().splitlines()
    v = [int(x) for x in lines[0].split()[1:]] + [0] * 10
    user, nice, system, idle, iowait, irq, softirq, steal = v[:8]
    cpus = sum(1 for line in lines if line.startswith("cpu") and line[3:4].isdigit())
    return user + nice + system + irq + softirq + steal, idle + iowait, softirq, cpus


def snapshot(pid):
    """One reading of every accounting, server and machine; read it right before and right after the load run."""
    busy, idle, softirq, cpus = machine_ticks()
    utime, stime = proc_stat_ticks(pid)
    return {"pid": pid, "time": time.monotonic(), "utime_ticks": utime, "stime_ticks": stime,
            "sched_ns": process_sched_ns(pid), "threads_ns": {str(k): v for k, v in threads_sched_ns(pid).items()},
            "machine_busy_ticks": busy, "machine_idle_ticks": idle, "machine_softirq_ticks": softirq, "cpus": cpus}


def delta(before, after):
    """Seconds of CPU between two snapshots of the same process, by each accounting."""
    t0, t1 = before["threads_ns"], after["threads_ns"]
    # A thread in both readings counts its difference; one born in between counts all of its runtime; one that
    # exited in between is lost to this sum (and counted in threads_exited) but not to sched_s.
    threads = sum(v - t0.get(tid, 0) for tid, v in t1.items())
    sched = (after["sched_ns"] - before["sched_ns"]) / 1e9 \
        if before.get("sched_ns") is not None and after.get("sched_ns") is not None else threads / 1e9
    return {
        "wall_s": after["time"] - before["time"],
        "user_s": (after["utime_ticks"] - before["utime_ticks"]) / HZ,
        "sys_s": (after["stime_ticks"] - before["stime_ticks"]) / HZ,
        "stat_s": (after["utime_ticks"] + after["stime_ticks"] - before["utime_ticks"] - before["stime_ticks"]) / HZ,
        "sched_s": sched,
        "threads_sched_s": threads / 1e9,
        "threads_exited": sum(1 for tid in t0 if tid not in t1),
        "machine_busy_s": (after["machine_busy_ticks"] - before["machine_busy_ticks"]) / HZ,
        "machine_idle_s": (after["machine_idle_ticks"] - before["machine_idle_ticks"]) / HZ,
        "machine_softirq_s": (after["machine_softirq_ticks"] - before["machine_softirq_ticks"]) / HZ,
        "cpus": after["cpus"],
    }


def kernel_info():
    """The kernel release and the accounting options that decide what the per-process figures include."""
    info = {"release": os.uname().release, "irq_time_accounting": None, "virt_cpu_accounting_gen": None,
            "user_hz": HZ}
    try:
        with gzip.open("/proc/config.gz", "rt") as f:
            config = f.read()
        info["irq_time_accounting"] = "CONFIG_IRQ_TIME_ACCOUNTING=y" in config
        info["virt_cpu_accounting_gen"] = "CONFIG_VIRT_CPU_ACCOUNTING_GEN=y" in config
    except OSError:
        pass  # no /proc/config.gz: unknown (None)
    return info


def kernel_note(info):
    """One sentence for a report: what the per-process figures include on the kernel the run was on."""
    if not info:
        return "kernel accounting options not recorded (an older results.json)"
    irq = info.get("irq_time_accounting")
    what = ("softirq work run in a process's context is in its stat and sched figures" if irq is False else
            "softirq time is in neither per-process figure, only in the machine's" if irq else
            "whether softirq time is in the per-process figures is unknown (no /proc/config.gz)")
    return f"kernel {info.get('release', '?')}, CONFIG_IRQ_TIME_ACCOUNTING " + \
        {False: "not set", True: "set", None: "unknown"}[irq] + f": {what}"


if __name__ == "__main__":
    if len(sys.argv) != 2 or not sys.argv[1].isdigit():
        sys.exit("usage: bench/cpuacct.py PID")
    print(json.dumps(snapshot(int(sys.argv[1]))))
