/*
 * load_main_entry.c - overlap-load: the load-generating client that measures echo servers, on liboverlap.
 */
#include "load.h"
#include "overlap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifndef _WIN32
#include <signal.h>
#endif

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
#ifndef _WIN32
    signal(SIGPIPE, SIG_IGN);
#endif
    struct load_options options;
    char reason[256];
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
    if (!result) {
        fprintf(stderr, "overlap-load: out of memory\n");
        return 1;
    }
    if (load_run(&options, result) < 0) {
        fprintf(stderr, "overlap-load: %s\n", result->first_error);
        free(result);
        return 1;
    }
    if (options.json)
        load_report_json(&options, result);
    else
        load_report_text(&options, result);
    int status = load_errors(result) == 0 && result->msgs > 0 ? 0 : 1;
    if (status && !load_errors(result))
        fprintf(stderr, "overlap-load: no message was echoed in the measured window\n");
    free(result);
    return status;
}
