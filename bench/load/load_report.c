/*
 * load_report.c - overlap-load's output: the progress line (stderr), the readable summary, and the JSON object
 * with every figure (config, counts, rates, latency percentiles, connects, errors by kind).
 */
#include "load_report.h"
#include "overlap.h"

#include <string.h>

static const char *const quantile_names[] = {"p50", "p90", "p99", "p99.9"};
static const char *const quantile_keys[] = {"p50", "p90", "p99", "p99_9"};
enum { QUANTILES = LOAD_REPORT_QUANTILES };

/* "35.1 us", "1.20 ms", "2.05 s". */
const char *load_report_duration(char *text, size_t size, double ns)
{
    if (ns < 1e3)
        snprintf(text, size, "%.2f us", ns / 1e3);
    else if (ns < 1e6)
        snprintf(text, size, "%.1f us", ns / 1e3);
    else if (ns < 1e9)
        snprintf(text, size, "%.2f ms", ns / 1e6);
    else
        snprintf(text, size, "%.2f s", ns / 1e9);
    return text;
}

static double per_second(double count, double seconds)
{
    return seconds > 0 ? count / seconds : 0;
}

void load_report_progress(FILE *out, const struct load_progress *p)
{
    char p99[32];
    fprintf(out, "[%5.1fs%s%s] %10.0f msgs/s %9.2f MB/s  p99 %10s  errors %llu  connections %llu\n", p->elapsed,
            p->label[0] ? " " : "", p->label, p->msgs_per_s, p->mb_per_s,
            p->p99_ns ? load_report_duration(p99, sizeof p99, (double)p->p99_ns) : "-", (unsigned long long)p->errors,
            (unsigned long long)p->connections);
    fflush(out);
}

const double load_report_quantiles[LOAD_REPORT_QUANTILES] = {0.5, 0.9, 0.99, 0.999};

void load_latency_of_histogram(const struct load_histogram *h, struct load_latency *l)
{
    l->count = h->count;
    l->min_ns = h->count ? (double)h->min : 0.0;
    l->mean_ns = load_histogram_mean(h);
    l->max_ns = (double)h->max;
    for (int i = 0; i < QUANTILES; i++)
        l->q_ns[i] = (double)load_histogram_quantile(h, load_report_quantiles[i]);
}

void load_report_latency_line(FILE *out, const char *label, const struct load_latency *l)
{
    char text[32];
    fprintf(out, "  %-11s", label);
    if (!l->count) {
        fprintf(out, " no samples\n");
        return;
    }
    for (int i = 0; i < QUANTILES; i++)
        fprintf(out, " %s %s ", quantile_names[i], load_report_duration(text, sizeof text, l->q_ns[i]));
    fprintf(out, " max %s", load_report_duration(text, sizeof text, l->max_ns));
    fprintf(out, "  (mean %s, %llu samples)\n", load_report_duration(text, sizeof text, l->mean_ns),
            (unsigned long long)l->count);
}

static void latency_line(FILE *out, const char *label, const struct load_histogram *h)
{
    struct load_latency l;
    load_latency_of_histogram(h, &l);
    load_report_latency_line(out, label, &l);
}

static void errors_line(FILE *out, const struct load_result *r)
{
    load_report_errors_line(out, r->errors, r->first_error);
}

void load_report_errors_line(FILE *out, const uint64_t errors[LOAD_ERR_KINDS], const char *first_error)
{
    uint64_t total = 0;
    for (int k = 0; k < LOAD_ERR_KINDS; k++)
        total += errors[k];
    fprintf(out, "  %-11s %llu", "errors", (unsigned long long)total);
    if (total) {
        const char *separator = " (";
        for (int k = 0; k < LOAD_ERR_KINDS; k++)
            if (errors[k]) {
                fprintf(out, "%s%s %llu", separator, load_error_names[k], (unsigned long long)errors[k]);
                separator = ", ";
            }
        fprintf(out, ")");
    }
    fprintf(out, "\n");
    if (first_error && first_error[0])
        fprintf(out, "  %-11s %s\n", "first error", first_error);
}

static void search_text(FILE *out, const struct load_search *search)
{
    char text[32];
    fprintf(out, "  %-11s target p99 %s:", "search", load_report_duration(text, sizeof text, search->target_p99_us * 1e3));
    if (search->best >= 0) {
        const struct load_trial *best = &search->trials[search->best];
        fprintf(out, " highest rate under it %.0f msgs/s (p99 %s)\n", best->rate,
                load_report_duration(text, sizeof text, (double)best->p99_ns));
    } else {
        fprintf(out, " no rate tried met it\n");
    }
    for (int i = 0; i < search->count; i++) {
        const struct load_trial *t = &search->trials[i];
        if (t->rate > 0)
            fprintf(out, "  %-11s rate %10.0f: %10.0f msgs/s, p99 %10s, errors %llu%s\n", "", t->rate,
                    t->msgs_per_s, load_report_duration(text, sizeof text, (double)t->p99_ns),
                    (unsigned long long)t->errors, t->met ? "  ok" : "");
        else
            fprintf(out, "  %-11s closed loop: %10.0f msgs/s, p99 %10s, errors %llu%s\n", "", t->msgs_per_s,
                    load_report_duration(text, sizeof text, (double)t->p99_ns), (unsigned long long)t->errors,
                    t->met ? "  ok" : "");
    }
}

void load_report_text(FILE *out, const struct load_options *o, const struct load_result *r,
                      const struct load_search *search)
{
    fprintf(out, "overlap-load %s -> %s (%s%s, %d thread%s): %u connection%s, %u-byte messages, pipeline %u, ",
            ovl_version(), r->target, o->model == LOAD_MODEL_URING ? "" : "--model ",
            o->model == LOAD_MODEL_URING ? r->backend : load_model_names[o->model], r->threads,
            r->threads == 1 ? "" : "s", o->connections,
            o->connections == 1 ? "" : "s", o->size, o->pipeline);
    if (r->rate > 0 && o->share_count)
        fprintf(out, "open loop at %.0f msgs/s, share %u/%u of %.0f (latency from scheduled send times)\n", r->rate,
                o->share_index, o->share_count, o->rate);
    else if (r->rate > 0)
        fprintf(out, "open loop at %.0f msgs/s (latency from scheduled send times)\n", r->rate);
    else
        fprintf(out, "closed loop\n");
    if (o->start_at > 0 && r->start_late > 0)
        fprintf(out, "  %-11s %.3f s late: --start-at %.3f had passed when the connections were open\n", "start",
                r->start_late, o->start_at);
    else if (o->start_at > 0)
        fprintf(out, "  %-11s at %.3f (--start-at), after %.2f s with the connections open\n", "start", o->start_at,
                r->start_wait);
    if (r->notice[0])
        fprintf(out, "  %-11s %s\n", "notice", r->notice);
    fprintf(out, "  %-11s %.2f s after %.2f s warmup", "window", r->seconds, o->warmup);
    if (o->churn)
        fprintf(out, ", reconnecting every %u messages", o->churn);
    fprintf(out, "\n");
    double mb = (double)r->bytes / 1e6;
    fprintf(out, "  %-11s %llu (%.0f msgs/s), %.2f MB echoed (%.2f MB/s each way)\n", "messages",
            (unsigned long long)r->msgs, per_second((double)r->msgs, r->seconds), mb, per_second(mb, r->seconds));
    if (r->rate > 0) {
        double achieved = per_second((double)r->msgs, r->seconds);
        fprintf(out, "  %-11s intended %.0f msgs/s, achieved %.0f msgs/s (%.1f%%)\n", "rate", r->rate, achieved,
                100.0 * achieved / r->rate);
    }
    latency_line(out, "latency", &r->latency);
    load_fairness_write_text(out, &r->fairness);
    if (r->rate > 0) {
        latency_line(out, "client lag", &r->send_lag);
        /* Honesty: when the client's own scheduling delay is a large part of the latency, say so. */
        uint64_t lag = load_histogram_quantile(&r->send_lag, 0.99), p99 = load_histogram_quantile(&r->latency, 0.99);
        if (p99 && lag * 4 > p99)
            fprintf(out, "  %-11s the client's own send delay (p99 %.1f us) is over a quarter of the latency p99: "
                         "part of the latency is the client's, not the server's\n",
                    "warning", (double)lag / 1e3);
    }
    fprintf(out, "  %-11s %llu", "connects", (unsigned long long)r->connects);
    if (o->churn || o->connect_rate > 0)
        fprintf(out, ", %llu in the window (%.1f/s)", (unsigned long long)r->window_connects,
                per_second((double)r->window_connects, r->seconds));
    fprintf(out, "\n");
    latency_line(out, "connect", &r->connect_latency);
    errors_line(out, r);
    double cpu = r->cpu_user + r->cpu_system;
    fprintf(out, "  %-11s user %.2f s + system %.2f s = %.0f%% of one core over the window", "client cpu",
            r->cpu_user, r->cpu_system, r->seconds > 0 ? 100.0 * cpu / r->seconds : 0.0);
    if (r->msgs)
        fprintf(out, ", %.2f us per message", cpu * 1e6 / (double)r->msgs);
    fprintf(out, "\n");
    if (r->reuse_ok || r->reuse_fallback || r->context_updates)
        fprintf(out, "  %-11s %llu reused, %llu fallbacks to a fresh socket, %llu context updates\n", "sockets",
                (unsigned long long)r->reuse_ok, (unsigned long long)r->reuse_fallback,
                (unsigned long long)r->context_updates);
    if (search)
        search_text(out, search);
}

/* ---- JSON ---- */

void load_report_json_string(FILE *out, const char *text)
{
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(out, "\\%c", *p);
        else if (*p < 0x20 || *p == 0x7f)
            fprintf(out, "\\u%04x", *p);
        else
            fputc(*p, out);
    }
    fputc('"', out);
}

void load_report_json_latency(FILE *out, const struct load_latency *l)
{
    fprintf(out, "{\"samples\":%llu", (unsigned long long)l->count);
    fprintf(out, ",\"min\":%.3f", l->min_ns / 1e3);
    fprintf(out, ",\"mean\":%.3f", l->mean_ns / 1e3);
    for (int i = 0; i < QUANTILES; i++)
        fprintf(out, ",\"%s\":%.3f", quantile_keys[i], l->q_ns[i] / 1e3);
    fprintf(out, ",\"max\":%.3f}", l->max_ns / 1e3);
}

static void json_latency(FILE *out, const struct load_histogram *h)
{
    struct load_latency l;
    load_latency_of_histogram(h, &l);
    load_report_json_latency(out, &l);
}

void load_report_json(FILE *out, const struct load_options *o, const struct load_result *r,
                      const struct load_search *search)
{
    fprintf(out, "{\"version\":");
    load_report_json_string(out, ovl_version());
    fprintf(out, ",\"config\":{\"host\":");
    load_report_json_string(out, o->host);
    fprintf(out, ",\"port\":");
    load_report_json_string(out, o->port);
    fprintf(out, ",\"target\":");
    load_report_json_string(out, r->target);
    fprintf(out, ",\"model\":");
    load_report_json_string(out, load_model_names[o->model]);
    fprintf(out, ",\"backend\":");
    load_report_json_string(out, r->backend);
    fprintf(out, ",\"connections\":%u,\"threads\":%d,\"size\":%u,\"pipeline\":%u", o->connections, r->threads,
            o->size, o->pipeline);
    fprintf(out, ",\"duration_s\":%.3f,\"warmup_s\":%.3f", o->duration, o->warmup);
    fprintf(out, ",\"rate\":%.3f,\"churn\":%u,\"connect_rate\":%.3f,\"target_p99_us\":%.3f", r->rate, o->churn,
            o->connect_rate, o->target_p99_us);
    if (o->share_count)
        fprintf(out, ",\"share\":\"%u/%u\",\"total_rate\":%.3f", o->share_index, o->share_count, o->rate);
    else
        fprintf(out, ",\"share\":null,\"total_rate\":%.3f", r->rate);
    if (o->start_at > 0)
        fprintf(out, ",\"start_at\":%.3f}", o->start_at);
    else
        fprintf(out, ",\"start_at\":null}");
    fprintf(out, ",\"seconds\":%.6f,\"msgs\":%llu,\"bytes\":%llu,\"bytes_total\":%llu", r->seconds,
            (unsigned long long)r->msgs, (unsigned long long)r->bytes, (unsigned long long)r->bytes_total);
    fprintf(out, ",\"msgs_per_s\":%.3f,\"mb_per_s\":%.6f", per_second((double)r->msgs, r->seconds),
            per_second((double)r->bytes / 1e6, r->seconds));
    fprintf(out, ",\"intended_rate\":%.3f,\"achieved_rate\":%.3f,\"start_wait_s\":%.6f,\"start_late_s\":%.6f",
            r->rate, r->rate > 0 ? per_second((double)r->msgs, r->seconds) : 0.0, r->start_wait, r->start_late);
    fprintf(out, ",\"latency_us\":");
    json_latency(out, &r->latency);
    fprintf(out, ",");
    load_fairness_write_json(out, &r->fairness);
    fprintf(out, ",\"connects\":%llu,\"connects_in_window\":%llu,\"connects_per_s\":%.3f,\"connect_latency_us\":",
            (unsigned long long)r->connects, (unsigned long long)r->window_connects,
            per_second((double)r->window_connects, r->seconds));
    json_latency(out, &r->connect_latency);
    fprintf(out, ",\"client_lag_us\":");
    json_latency(out, &r->send_lag);
    fprintf(out, ",\"errors\":{\"total\":%llu", (unsigned long long)load_result_errors(r));
    for (int k = 0; k < LOAD_ERR_KINDS; k++)
        fprintf(out, ",\"%s\":%llu", load_error_keys[k], (unsigned long long)r->errors[k]);
    fprintf(out, "},\"first_error\":");
    if (r->first_error[0])
        load_report_json_string(out, r->first_error);
    else
        fprintf(out, "null");
    fprintf(out, ",\"cpu\":{\"user_s\":%.3f,\"system_s\":%.3f,\"us_per_msg\":%.3f}", r->cpu_user, r->cpu_system,
            r->msgs ? (r->cpu_user + r->cpu_system) * 1e6 / (double)r->msgs : 0.0);
    fprintf(out, ",\"socket_reuse\":{\"reused\":%llu,\"fallback\":%llu,\"context_updates\":%llu}",
            (unsigned long long)r->reuse_ok, (unsigned long long)r->reuse_fallback,
            (unsigned long long)r->context_updates);
    if (r->notice[0]) {
        fprintf(out, ",\"notice\":");
        load_report_json_string(out, r->notice);
    }
    if (search) {
        fprintf(out, ",\"search\":{\"target_p99_us\":%.3f,\"best_rate\":", search->target_p99_us);
        if (search->best >= 0)
            fprintf(out, "%.3f", search->trials[search->best].rate);
        else
            fprintf(out, "null");
        fprintf(out, ",\"trials\":[");
        for (int i = 0; i < search->count; i++) {
            const struct load_trial *t = &search->trials[i];
            fprintf(out, "%s{\"rate\":%.3f,\"msgs_per_s\":%.3f,\"p99_us\":%.3f,\"errors\":%llu,\"met\":%s}",
                    i ? "," : "", t->rate, t->msgs_per_s, (double)t->p99_ns / 1e3, (unsigned long long)t->errors,
                    t->met ? "true" : "false");
        }
        fprintf(out, "]}");
    }
    fprintf(out, "}\n");
    fflush(out);
}
