#!/usr/bin/env bash
# overlap-load --hdr-log against the reference implementation: HdrHistogram's own HistogramLogProcessor (Debian's
# libhdrhistogram-java) reads the interval log of a short run against overlap-echo on 127.0.0.1, and its figures for
# the whole log (total count, max, the percentile distribution) agree with overlap-load's --json report within the
# histograms' precision (3 significant digits: a bucket is at most 1/1024 of its values wide; the log holds
# microseconds rounded up).
#
# Only loopback traffic; the server is stopped by its PID (script_support.sh). Nothing here asserts a rate, a
# duration or a latency: the figures compared are the same run's, seen by two readers.
set -euo pipefail

jar=/usr/share/java/hdrhistogram.jar
for tool in java python3; do
    command -v "$tool" >/dev/null || { echo "skipped: $tool is not installed (scripts/bootstrap installs default-jre-headless)"; exit 77; }
done
[ -r "$jar" ] || { echo "skipped: $jar is missing (scripts/bootstrap installs libhdrhistogram-java)"; exit 77; }
load_bin=${OVERLAP_LOAD:?OVERLAP_LOAD is not set (run through meson test)}
source "$(dirname "$0")/script_support.sh"

"$echo_bin" --host 127.0.0.1 --port 0 --threads 1 "${backend_args[@]}" >"$work/echo.log" 2>&1 &
pids+=("$!")
for _ in $(seq 100); do
    grep -q "^listening on" "$work/echo.log" && break
    sleep 0.1
done
port=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$work/echo.log" | head -n1)
[ -n "$port" ] || { echo "FAIL: overlap-echo did not start:"; cat "$work/echo.log"; exit 1; }

# Two workers and intervals shorter than the run: the log has several intervals to add, from two threads.
"$load_bin" 127.0.0.1 --port "$port" --connections 4 --threads 2 --duration 1.5 --warmup 0.2 \
    --hdr-log "$work/run.hlog" --hdr-interval 0.5 --hdr-tag gen1 --json >"$work/run.json" 2>"$work/run.err" ||
    { echo "FAIL: overlap-load exited $?:"; cat "$work/run.err"; exit 1; }
for series in gen1 gen1.connect; do
    java -cp "$jar" org.HdrHistogram.HistogramLogProcessor -i "$work/run.hlog" -tag "$series" \
        -outputValueUnitRatio 1 -o "$work/$series" >"$work/$series.java.log" 2>&1 ||
        { echo "FAIL: HistogramLogProcessor could not read the $series series:"; cat "$work/$series.java.log"; exit 1; }
done

python3 - "$work" <<'PY'
import json, re, sys
work = sys.argv[1]
report = json.load(open(f"{work}/run.json"))

def tolerance(a, b):
    # Both are the top of a 3-digit bucket holding the same sample (ours in ns, theirs in us rounded up).
    return (max(a, b) + 1) / 1024 + 1.0

def distribution(path):
    rows, total, peak = [], None, None
    for line in open(path):
        m = re.match(r"^\s*([0-9.]+)\s+([0-9.]+)\s+([0-9]+)", line)
        if m:
            rows.append((float(m.group(1)), float(m.group(2)), int(m.group(3))))
        m = re.search(r"Max\s*=\s*([0-9.]+), Total count\s*=\s*([0-9]+)", line)
        if m:
            peak, total = float(m.group(1)), int(m.group(2))
    assert rows and total is not None, f"{path}: no percentile distribution in HistogramLogProcessor's output"
    return rows, total, peak

failures = []
for series, key in (("gen1", "latency_us"), ("gen1.connect", "connect_latency_us")):
    ours = report[key]
    rows, total, peak = distribution(f"{work}/{series}.hgrm")
    print(f"{series}: reference count {total} max {peak}; ours count {ours['samples']} max {ours['max']}")
    if total != ours["samples"]:
        failures.append(f"{series}: the reference counts {total} values, overlap-load {ours['samples']}")
    if abs(peak - ours["max"]) > tolerance(peak, ours["max"]):
        failures.append(f"{series}: max {peak} (reference) vs {ours['max']} us")
    for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99_9", 0.999)):
        # The reference prints the value at fixed percentile steps; ours must lie between the neighbouring steps
        # (at 50% and 90% there is a step exactly on it).
        below = [v for v, p, _ in rows if p <= q + 1e-12]
        above = [v for v, p, _ in rows if p >= q - 1e-12]
        lo, hi = below[-1], above[0]
        value = ours[name]
        print(f"  {name}: ours {value} us, reference between {lo} and {hi} us")
        if value < lo - tolerance(lo, value) or value > hi + tolerance(hi, value):
            failures.append(f"{series} {name}: ours {value} us is not between the reference's {lo} and {hi} us")
if failures:
    print("FAIL:\n  " + "\n  ".join(failures))
    sys.exit(1)
print("the reference implementation reads our log and agrees with our report")
PY
