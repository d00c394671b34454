// tests/HdrReference.java - HdrHistogram's reference HistogramLogWriter writes a log for overlap-load merge to read
// (run by tests/hdr_log.sh as a single-file program: java -cp hdrhistogram.jar HdrReference.java OUT MODE).
//   MODE "match":  1 us to 1 hour, 3 digits (overlap-load's own logs' layout), tag "ref", two intervals of known
//                  values; prints what the reference computes from them: count, p50, p90, p99, p99.9, max (us).
//   MODE "coarse": 2 digits up to 1,000,000: a log that must not be merged with ours.
import org.HdrHistogram.Histogram;
import org.HdrHistogram.HistogramLogWriter;

public class HdrReference {
    public static void main(String[] args) throws Exception {
        boolean coarse = args[1].equals("coarse");
        HistogramLogWriter writer = new HistogramLogWriter(args[0]);
        long start = 1700000000000L;
        writer.outputComment("[written by HistogramLogWriter for tests/hdr_log.sh]");
        writer.outputLogFormatVersion();
        writer.outputStartTime(start);
        writer.outputBaseTime(start);
        writer.outputLegend();
        Histogram total = coarse ? new Histogram(1000000L, 2) : new Histogram(3600000000L, 3);
        Histogram first = coarse ? new Histogram(1000000L, 2) : new Histogram(3600000000L, 3);
        first.setTag("ref");
        // 2000 values in all, so that 50%, 90%, 99% and 99.9% fall on whole ranks whichever rounding is used.
        for (int i = 1; i <= 1000; i++)
            first.recordValue(7L * i);
        writer.outputIntervalHistogram(0.0, 1.0, first, 1.0);
        Histogram second = coarse ? new Histogram(1000000L, 2) : new Histogram(3600000000L, 3);
        second.setTag("ref");
        second.recordValueWithCount(123456L, 990);
        second.recordValueWithCount(coarse ? 500000L : 5000000L, 10);
        writer.outputIntervalHistogram(1.0, 2.0, second, 1.0);
        writer.close();
        total.add(first);
        total.add(second);
        System.out.printf("%d %d %d %d %d %d%n", total.getTotalCount(), total.getValueAtPercentile(50.0),
                total.getValueAtPercentile(90.0), total.getValueAtPercentile(99.0),
                total.getValueAtPercentile(99.9), total.getMaxValue());
    }
}
