/*
 * load_main.c - overlap-load: the load-generating client that measures echo servers, built on liboverlap.
 * Parses the arguments, runs the load (or the --target-p99 search, a series of runs), prints the report, and
 * exits non-zero whenever anything was wrong: a bad argument (2), a server that is not there, or any error during
 * the run (1).
 */
#include "load_merge.h"
#include "load_options.h"
#include "load_report.h"
#include "load_run.h"
#ifndef _WIN32
#include "load_socket.h"
#endif
#include "overlap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifndef _WIN32
#include <signal.h>
#endif


enum { SEARCH_STEPS = 8 };

static double msgs_per_s(const struct load_result *r)
{
    return r->seconds > 0 ? (double)r->msgs / r->seconds : 0;
}

static void note_trial(struct load_search *search, const struct load_result *r)
{
    struct load_trial *t = &search->trials[search->count++];
    t->rate = r->rate;
    t->msgs_per_s = msgs_per_s(r);
    t->p99_ns = load_histogram_quantile(&r->latency, 0.99);
    t->errors = load_result_errors(r);
    /* Only open-loop runs count: a closed-loop p99 hides the queueing a steady rate would meet. */
    t->met = t->rate > 0 && t->errors == 0 && r->msgs > 0 && (double)t->p99_ns <= search->target_p99_us * 1e3;
    if (t->rate > 0)
        fprintf(stderr, "overlap-load: search: rate %.0f/s: %.0f msgs/s, p99 %.1f us, errors %llu%s\n", t->rate,
                t->msgs_per_s, (double)t->p99_ns / 1e3, (unsigned long long)t->errors, t->met ? ": under target" : "");
    else
        fprintf(stderr, "overlap-load: search: closed loop: %.0f msgs/s, p99 %.1f us, errors %llu\n",
                t->msgs_per_s, (double)t->p99_ns / 1e3, (unsigned long long)t->errors);
}

/* --target-p99: a closed-loop run finds the ceiling; then a bisection over open-loop rates below it finds the
 * highest rate whose p99 (measured from scheduled send times) stays under the target. Any error ends the search.
 * On return `best` holds the best run's result (or the last one tried when none met the target). Returns 0, or
 * -1 when a run could not happen at all (reason in best->first_error). */
static int search_rate(const struct load_options *o, struct load_search *search, struct load_result *best,
                       struct load_result *scratch)
{
    memset(search, 0, sizeof *search);
    search->target_p99_us = o->target_p99_us;
    search->best = -1;
    if (load_run(o, 0, best) < 0)
        return -1;
    note_trial(search, best);
    double ceiling = msgs_per_s(best);
    if (load_result_errors(best) || ceiling <= 0)
        return 0;
    double low = 0, high = ceiling;
    for (int step = 0; step < SEARCH_STEPS && search->count < LOAD_SEARCH_MAX; step++) {
        double rate = low > 0 ? (low + high) / 2 : high * 0.5;
        if (rate < 1)
            break;
        if (load_run(o, rate, scratch) < 0) {
            memcpy(best, scratch, sizeof *best);
            return -1;
        }
        note_trial(search, scratch);
        const struct load_trial *t = &search->trials[search->count - 1];
        if (t->errors) {
            memcpy(best, scratch, sizeof *best);
            return 0;
        }
        if (t->met) {
            low = rate;
            search->best = search->count - 1;
            memcpy(best, scratch, sizeof *best);
        } else {
            high = rate;
        }
        if ((high - low) < ceiling * 0.02)
            break;
    }
    if (search->best < 0)
        memcpy(best, scratch, sizeof *best);
    return 0;
}

/* One run with the client model --model names (the search only ever runs the engine's: load_options refuses
 * --target-p99 with the others). */
static int run_model(const struct load_options *o, double rate, struct load_result *result)
{
    switch (o->model) {
#ifdef __linux__
    case LOAD_MODEL_EPOLL:
        return load_model_epoll(o, rate, result);
#endif
#ifndef _WIN32
    case LOAD_MODEL_THREADS:
        return load_model_threads(o, rate, result);
#endif
    default:
        return load_run(o, rate, result);
    }
}

/* --share A/B: this generator's part of the total --rate. */
static double share_rate(const struct load_options *o)
{
    return o->share_count ? o->rate / o->share_count : o->rate;
}

int main(int argc, char **argv)
{
#ifdef _WIN32
    /* The C runtime has no line buffering (_IOLBF is full buffering, and a size under 2 is refused): unbuffered,
     * so a pipe or file sees each line when it is printed, not at exit. */
    setvbuf(stdout, NULL, _IONBF, 0);
#else
    setvbuf(stdout, NULL, _IOLBF, 0);
#endif
#ifndef _WIN32
    signal(SIGPIPE, SIG_IGN);
#endif
    char reason[256];
    if (argc >= 2 && argv[1] && !strcmp(argv[1], "merge")) {
        struct load_merge_options merge;
        if (load_merge_options_parse(argc - 1, argv + 1, &merge, reason, sizeof reason) < 0) {
            fprintf(stderr, "overlap-load: %s\n%s", reason, load_merge_usage);
            return 2;
        }
        if (merge.help) {
            fputs(load_merge_usage, stdout);
            return 0;
        }
        return load_merge(&merge);
    }
    struct load_options options;
    if (load_options_parse(argc, argv, &options, reason, sizeof reason) < 0) {
        fprintf(stderr, "overlap-load: %s\n%s", reason, load_usage);
        return 2;
    }
    if (options.help) {
        fputs(load_usage, stdout);
        return 0;
    }
    if (options.version) {
        printf("overlap-load %s\n", ovl_version());
        return 0;
    }
    if (options.once)
        return load_once(&options);

    struct load_result *result = calloc(1, sizeof *result);
    struct load_result *scratch = calloc(1, sizeof *scratch);
    struct load_search *search = calloc(1, sizeof *search);
    if (!result || !scratch || !search) {
        fprintf(stderr, "overlap-load: out of memory\n");
        return 1;
    }
    int rc = options.target_p99_us > 0 ? search_rate(&options, search, result, scratch)
                                       : run_model(&options, share_rate(&options), result);
    const struct load_search *searched = options.target_p99_us > 0 ? search : NULL;
    int status = 0;
    if (rc < 0) {
        fprintf(stderr, "overlap-load: %s\n", result->first_error);
        status = 1;
    } else {
        if (options.json) {
            load_report_json(stdout, &options, result, searched);
            load_report_text(stderr, &options, result, searched);
        } else {
            load_report_text(stdout, &options, result, searched);
        }
        if (load_result_errors(result)) {
            fprintf(stderr, "overlap-load: %llu error%s: %s\n", (unsigned long long)load_result_errors(result),
                    load_result_errors(result) == 1 ? "" : "s", result->first_error);
            status = 1;
        } else if (!result->msgs) {
            fprintf(stderr, "overlap-load: no message was echoed in the measured window\n");
            status = 1;
        } else if (searched && searched->best < 0) {
            fprintf(stderr, "overlap-load: no rate tried kept p99 under %.0f us\n", options.target_p99_us);
            status = 1;
        }
    }
    free(result);
    free(scratch);
    free(search);
    return status;
}
