/*
 * load_phases.c - the main thread's phases of a run, for every client model (load_phases.h).
 */
#include "load_phases.h"
#include "load_report.h"

#include <stdio.h>

#ifdef _WIN32
#include <io.h>
#else
#include <unistd.h>
#endif

#define SECOND_NS 1000000000ull
#define POLL_NS 1000000ull /* how often the main thread looks at the connections' counts while it waits for them */

void load_phases_init(struct load_phases *p, const struct load_options *o, const struct load_phases_hooks *hooks,
                      void *model)
{
    atomic_store(&p->phase, LOAD_PHASE_OPENING);
    p->hooks = hooks;
    p->model = model;
#ifdef _WIN32
    p->progress = o->progress || _isatty(2);
#else
    p->progress = o->progress || isatty(2);
#endif
    p->progress_start_ns = p->progress_last_ns = load_now_ns();
    p->last_msgs = p->last_bytes = 0;
}

static void enter_at(struct load_phases *p, enum load_phase phase, uint64_t now)
{
    atomic_store_explicit(&p->phase, phase, memory_order_release);
    if (p->hooks->entered)
        p->hooks->entered(p->model, phase, now);
}

void load_phases_enter(struct load_phases *p, enum load_phase phase)
{
    enter_at(p, phase, load_now_ns());
}

void load_phases_progress_restart(struct load_phases *p, uint64_t now)
{
    struct load_phases_counts counts = {0};
    p->hooks->counts(p->model, &counts);
    p->progress_start_ns = p->progress_last_ns = now;
    p->last_msgs = counts.msgs;
    p->last_bytes = counts.bytes;
}

static void progress_line(struct load_phases *p, uint64_t now, const char *label)
{
    struct load_phases_counts counts = {0};
    p->hooks->counts(p->model, &counts);
    double interval = (double)(now - p->progress_last_ns) / 1e9;
    struct load_progress line = {
        .elapsed = (double)(now - p->progress_start_ns) / 1e9,
        .label = label,
        .msgs_per_s = interval > 0 ? (double)(counts.msgs - p->last_msgs) / interval : 0,
        .mb_per_s = interval > 0 ? (double)(counts.bytes - p->last_bytes) / interval / 1e6 : 0,
        .p99_ns = counts.p99_ns,
        .errors = counts.errors,
        .connections = p->hooks->live(p->model),
    };
    load_report_progress(stderr, &line);
    p->progress_last_ns = now;
    p->last_msgs = counts.msgs;
    p->last_bytes = counts.bytes;
}

void load_phases_wait(struct load_phases *p, uint64_t end, const char *label)
{
    bool ticking = p->tick_ns && p->hooks->tick && load_phase_of(p) == LOAD_PHASE_MEASURE;
    for (;;) {
        uint64_t now = load_now_ns();
        if (now >= end)
            return;
        uint64_t next = p->progress ? p->progress_last_ns + SECOND_NS : end;
        if (ticking && p->tick_last_ns + p->tick_ns < next)
            next = p->tick_last_ns + p->tick_ns;
        if (next > end)
            next = end;
        load_sleep_until(next);
        now = load_now_ns();
        if (p->progress && now >= p->progress_last_ns + SECOND_NS)
            progress_line(p, now, label);
        if (ticking && now >= p->tick_last_ns + p->tick_ns && now < end) {
            p->hooks->tick(p->model, now);
            p->tick_last_ns = now;
        }
    }
}

bool load_phases_open(struct load_phases *p, uint32_t connections, uint64_t deadline)
{
    while (atomic_load(&p->opened) + atomic_load(&p->failed) < connections && load_now_ns() < deadline)
        load_sleep_until(load_now_ns() + POLL_NS);
    return atomic_load(&p->opened) > 0;
}

uint64_t load_phases_share_offset_ns(const struct load_options *o)
{
    return o->share_count ? (uint64_t)((double)(o->share_index - 1) * 1e9 / o->rate) : 0;
}

uint64_t load_phases_window(struct load_phases *p, const struct load_options *o, uint64_t now,
                            struct load_result *result)
{
    /* The open-loop schedule starts with the warmup (with --start-at it was fixed before the connections opened). */
    if (!atomic_load(&p->base_ns))
        atomic_store(&p->base_ns, now + load_phases_share_offset_ns(o));
    enter_at(p, LOAD_PHASE_WARMUP, now);
    load_phases_progress_restart(p, now);
    load_phases_wait(p, now + (uint64_t)(o->warmup * 1e9), "warmup");

    double user0, system0, user1, system1;
    load_cpu_times(&user0, &system0);
    uint64_t start = load_now_ns();
    p->tick_last_ns = start;
    enter_at(p, LOAD_PHASE_MEASURE, start);
    load_phases_progress_restart(p, start);
    load_phases_wait(p, start + (uint64_t)(o->duration * 1e9), "");
    uint64_t stop = load_now_ns();
    load_cpu_times(&user1, &system1);
    load_phases_stop(p);

    result->seconds = (double)(stop - start) / 1e9;
    result->cpu_user = user1 - user0;
    result->cpu_system = system1 - system0;
    return stop;
}

void load_phases_stop(struct load_phases *p)
{
    load_phases_enter(p, LOAD_PHASE_STOPPING);
    uint64_t deadline = load_now_ns() + LOAD_PHASES_GRACE_NS;
    while (p->hooks->live(p->model) > 0 && load_now_ns() < deadline)
        load_sleep_until(load_now_ns() + POLL_NS);
}
