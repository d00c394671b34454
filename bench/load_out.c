/*
 * load_out.c - overlap-load's report: a readable summary, or one JSON object with every figure.
 */
#include "load.h"
#include "overlap.h"

#include <stdio.h>

static double us(uint64_t ns)
{
    return (double)ns / 1e3;
}

static double per_second(uint64_t n, double seconds)
{
    return seconds > 0 ? (double)n / seconds : 0;
}

void load_report_text(const struct load_options *o, const struct load_result *r)
{
    const struct load_hist *l = &r->latency;
    printf("overlap-load %s: %s:%s, %u connections, %d thread%s, %u-byte messages, pipeline %u%s\n", ovl_version(),
           o->host, o->port, o->connections, o->threads, o->threads == 1 ? "" : "s", o->size, o->pipeline,
           o->churn ? ", churn" : "");
    printf("  %llu messages in %.2f s: %.0f msgs/s, %.2f MB/s (every byte verified)\n", (unsigned long long)r->msgs,
           r->seconds, per_second(r->msgs, r->seconds), per_second(r->bytes, r->seconds) / 1e6);
    printf("  latency us: p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f\n", us(load_hist_quantile(l, 0.5)),
           us(load_hist_quantile(l, 0.9)), us(load_hist_quantile(l, 0.99)), us(load_hist_quantile(l, 0.999)),
           us(l->max));
    const struct load_hist *c = &r->connect_latency;
    printf("  connects: %llu (%.0f/s over the run), connect latency us: p50 %.1f  p99 %.1f  max %.1f\n",
           (unsigned long long)r->connects, per_second(r->connects, r->seconds), us(load_hist_quantile(c, 0.5)),
           us(load_hist_quantile(c, 0.99)), us(c->max));
    if (r->msgs)
        printf("  client CPU: %.2f us per message (user %.2f s, system %.2f s)\n",
               (r->cpu_user + r->cpu_system) * 1e6 / (double)r->msgs, r->cpu_user, r->cpu_system);
    printf("  errors: %llu (connect %llu, verify %llu, reset %llu, io %llu, early close %llu)\n",
           (unsigned long long)load_errors(r), (unsigned long long)r->connect_failures,
           (unsigned long long)r->verify_errors, (unsigned long long)r->resets, (unsigned long long)r->io_errors,
           (unsigned long long)r->early_closes);
    if (r->reuse_ok || r->reuse_fallback || r->context_updates)
        printf("  socket reuse: %llu reused, %llu fallbacks to a fresh socket, %llu context updates\n",
               (unsigned long long)r->reuse_ok, (unsigned long long)r->reuse_fallback,
               (unsigned long long)r->context_updates);
    if (r->first_error[0])
        printf("  first error: %s\n", r->first_error);
}

static void json_string(const char *text)
{
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        if (*p == '"' || *p == '\\')
            printf("\\%c", *p);
        else if (*p < 0x20)
            printf("\\u%04x", *p);
        else
            putchar(*p);
    }
    putchar('"');
}

static void json_latency(const char *name, const struct load_hist *h)
{
    printf("\"%s\":{\"count\":%llu,\"p50\":%.1f,\"p90\":%.1f,\"p99\":%.1f,\"p999\":%.1f,\"max\":%.1f,\"mean\":%.1f}",
           name, (unsigned long long)h->count, us(load_hist_quantile(h, 0.5)), us(load_hist_quantile(h, 0.9)),
           us(load_hist_quantile(h, 0.99)), us(load_hist_quantile(h, 0.999)), us(h->max),
           h->count ? us(h->sum) / (double)h->count : 0.0);
}

void load_report_json(const struct load_options *o, const struct load_result *r)
{
    printf("{\"version\":");
    json_string(ovl_version());
    printf(",\"config\":{\"host\":");
    json_string(o->host);
    printf(",\"port\":");
    json_string(o->port);
    printf(",\"connections\":%u,\"threads\":%d,\"size\":%u,\"pipeline\":%u,\"duration\":%.3f,\"warmup\":%.3f,"
           "\"churn\":%u,\"connect_rate\":%.3f},",
           o->connections, o->threads, o->size, o->pipeline, o->duration, o->warmup, o->churn, o->connect_rate);
    printf("\"seconds\":%.3f,\"msgs\":%llu,\"bytes\":%llu,\"msgs_per_s\":%.1f,\"mb_per_s\":%.3f,", r->seconds,
           (unsigned long long)r->msgs, (unsigned long long)r->bytes, per_second(r->msgs, r->seconds),
           per_second(r->bytes, r->seconds) / 1e6);
    json_latency("latency_us", &r->latency);
    printf(",\"connects\":%llu,\"connects_per_s\":%.1f,", (unsigned long long)r->connects,
           per_second(r->connects, r->seconds));
    json_latency("connect_latency_us", &r->connect_latency);
    printf(",\"cpu\":{\"user_s\":%.3f,\"system_s\":%.3f,\"us_per_msg\":%.3f},", r->cpu_user, r->cpu_system,
           r->msgs ? (r->cpu_user + r->cpu_system) * 1e6 / (double)r->msgs : 0.0);
    printf("\"socket_reuse\":{\"reused\":%llu,\"fallback\":%llu,\"context_updates\":%llu},",
           (unsigned long long)r->reuse_ok, (unsigned long long)r->reuse_fallback,
           (unsigned long long)r->context_updates);
    printf("\"errors\":{\"total\":%llu,\"connect\":%llu,\"verify\":%llu,\"reset\":%llu,\"io\":%llu,"
           "\"early_close\":%llu},\"first_error\":",
           (unsigned long long)load_errors(r), (unsigned long long)r->connect_failures,
           (unsigned long long)r->verify_errors, (unsigned long long)r->resets, (unsigned long long)r->io_errors,
           (unsigned long long)r->early_closes);
    json_string(r->first_error);
    printf("}\n");
}
