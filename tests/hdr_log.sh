#!/usr/bin/env bash
# overlap-load --hdr-log against the reference implementation: HdrHistogram's own HistogramLogProcessor (Debian's
# libhdrhistogram-java) reads the interval log of a short run against overlap-echo on 127.0.0.1, and its figures for
# the whole log (total count, max, the percentile distribution) agree with overlap-load's --json report within the
# histograms' precision (3 significant digits: a bucket is at most 1/1024 of its values wide; the log holds
# microseconds rounded up). Then the other way: a log that the reference HistogramLogWriter writes (tests/
# HdrReference.java, run as a single-file program) is read by `overlap-load merge`, which must find the figures the
# reference computes from the same values, exactly; merged with our log it adds the counts; a log of another
# precision is refused, and so are damaged logs (with a message, never a crash).
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
    --hdr-log "$work/run.hlog" --hdr-interval 0.1 --hdr-tag gen1 --json >"$work/run.json" 2>"$work/run.err" ||
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
# 1.5 s in intervals of 0.1 s: fifteen. A late tick on a busy machine merges intervals, so only "more than one"
# is asserted: it fails only if the tick is missing (one interval, the whole window), or if the run's main thread
# slept through 1.4 s of a 1.5 s window (0.8 s late was seen at load average 20).
intervals = sum(1 for line in open(f"{work}/run.hlog") if line.startswith("Tag=gen1,"))
print(f"gen1: {intervals} intervals")
if intervals < 2:
    failures.append(f"gen1: {intervals} interval(s) in the log of a 1.5 s window with --hdr-interval 0.1")
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

# The reference's own log, read by our merger: the figures the reference computes, exactly (whole ranks, the same
# buckets).
java -cp "$jar" "$(dirname "$0")/HdrReference.java" "$work/ref.hlog" match >"$work/ref.expected" 2>"$work/ref.err" ||
    { echo "FAIL: the reference writer did not run:"; cat "$work/ref.err"; exit 1; }
java -cp "$jar" "$(dirname "$0")/HdrReference.java" "$work/coarse.hlog" coarse >/dev/null 2>"$work/coarse.err" ||
    { echo "FAIL: the reference writer did not run:"; cat "$work/coarse.err"; exit 1; }
"$load_bin" merge --json "$work/ref.hlog" >"$work/ref.json" 2>"$work/ref.merge.err" ||
    { echo "FAIL: overlap-load merge could not read the reference's log:"; cat "$work/ref.merge.err"; exit 1; }
"$load_bin" merge --json "$work/run.hlog" "$work/ref.hlog" >"$work/both.json" 2>"$work/both.err" ||
    { echo "FAIL: overlap-load merge of ours and the reference's log:"; cat "$work/both.err"; exit 1; }
if "$load_bin" merge "$work/run.hlog" "$work/coarse.hlog" >"$work/coarse.out" 2>&1; then
    echo "FAIL: logs of different precision were merged:"; cat "$work/coarse.out"; exit 1
fi
grep -q "would not be exact" "$work/coarse.out" || { echo "FAIL: no clear refusal:"; cat "$work/coarse.out"; exit 1; }

# Damaged logs: each is refused with a message naming the log, and nothing crashes (exit 1, not a signal).
python3 - "$work" <<'PY'
import base64, os, sys, zlib
work = sys.argv[1]
lines = open(f"{work}/run.hlog").read().splitlines()
first = next(i for i, l in enumerate(lines) if l.startswith("Tag="))
tag, start, length, peak, payload = lines[first].split(",", 4)
raw = base64.b64decode(payload)
plain = zlib.decompress(raw[8:])
def variant(name, text):
    open(f"{work}/bad-{name}.hlog", "w").write(text)
def with_payload(data):
    copy = list(lines)
    copy[first] = ",".join([tag, start, length, peak, base64.b64encode(data).decode()])
    return "\n".join(copy) + "\n"
variant("empty", "")
variant("garbage", "this is not a log\n")
variant("binary", "Tag=x,0,1,1,\0\1\2\n")
variant("base64", with_payload(raw)[:-1].replace(payload[:20], "!!!!" + payload[4:20]))
variant("cookie", with_payload(b"\x1c\x84\x93\x07" + raw[4:]))
variant("truncated", with_payload(raw[:len(raw) // 2]))
variant("length", with_payload(raw[:4] + (len(raw) * 4).to_bytes(4, "big") + raw[8:]))
# A histogram whose counts run past its array: a run of empty buckets longer than the array.
header = bytearray(plain[:40])
body = bytes([0x81, 0x80, 0x80, 0x80, 0x10]) + b"\x02"   # ZigZag -(2^31 + ...) zeros, then a count
header[4:8] = len(body).to_bytes(4, "big")
packed = zlib.compress(bytes(header) + body)
variant("overrun", with_payload(raw[:4] + len(packed).to_bytes(4, "big") + packed))
# Parameters out of range: 9 significant digits.
header = bytearray(plain)
header[12:16] = (9).to_bytes(4, "big")
packed = zlib.compress(bytes(header))
variant("digits", with_payload(raw[:4] + len(packed).to_bytes(4, "big") + packed))
variant("fields", "Tag=x,0,abc,1,HISTBAAAA\n")
variant("summary", "#[overlap-load summary: msgs=12\n")
PY
for bad in "$work"/bad-*.hlog; do
    status=0
    "$load_bin" merge "$bad" >"$work/bad.out" 2>&1 || status=$?
    if [ "$status" -ne 1 ] || ! grep -q "overlap-load: merge: .*$(basename "$bad")" "$work/bad.out"; then
        echo "FAIL: $(basename "$bad"): exit $status, expected 1 with a message naming the log:"; cat "$work/bad.out"
        exit 1
    fi
    echo "$(basename "$bad"): $(head -n1 "$work/bad.out")"
done
status=0
"$load_bin" 127.0.0.1 --port "$port" --connections 1 --duration 0.1 --warmup 0 \
    --hdr-log "$work/no/such/dir/x.hlog" >"$work/nodir.out" 2>&1 || status=$?
[ "$status" -eq 1 ] && grep -q -- "--hdr-log $work/no/such/dir/x.hlog: No such file" "$work/nodir.out" ||
    { echo "FAIL: an unwritable --hdr-log: exit $status:"; cat "$work/nodir.out"; exit 1; }

python3 - "$work" <<'PY'
import json, sys
work = sys.argv[1]
count, p50, p90, p99, p999, peak = map(int, open(f"{work}/ref.expected").read().split())
ref = json.load(open(f"{work}/ref.json"))
lat = ref["latency_us"]
got = (lat["samples"], lat["p50"], lat["p90"], lat["p99"], lat["p99_9"], lat["max"])
want = (count, p50, p90, p99, p999, peak)
print(f"reference log: the reference computes {want}, overlap-load merge {got}")
assert got == tuple(float(x) for x in want), "the merger disagrees with the reference on the reference's own log"
assert ref["generators"][0]["name"] == "ref" and ref["generators"][0]["summary"] is False, ref["generators"]
run = json.load(open(f"{work}/run.json"))
both = json.load(open(f"{work}/both.json"))
assert both["merge"]["generators"] == 2, both["merge"]
assert both["latency_us"]["samples"] == run["latency_us"]["samples"] + count, (both["latency_us"], count)
assert both["msgs"] == run["msgs"] + count and both["bytes"] == run["bytes"], both
assert both["errors"]["total"] == 0 and both["merge"]["start_skew_s"] is not None, both
print("overlap-load merge reads the reference's log and adds it to ours exactly")
PY
