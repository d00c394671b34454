/*
 * metrics_http.h - `--metrics ADDR:PORT` for overlap-echo and overlap-proxy: GET /metrics in the Prometheus text
 * exposition format (version 0.0.4), served by an engine of its own through liboverlap's public API.
 */
#ifndef OVL_METRICS_HTTP_H
#define OVL_METRICS_HTTP_H

#include "overlap.h"

#include <stddef.h>

struct metrics_server;

/* Serve the counters of `source` (an engine that lives longer than the server) on host:port ("" or NULL host = every
 * interface) as `program` (the label on overlap_info). One worker thread of its own; requests are small and few.
 * Returns 0 and *out, or a negative error with err filled. */
int metrics_start(struct metrics_server **out, ovl_engine *source, const char *program, const char *host,
                  const char *port, ovl_error_info *err);
/* "127.0.0.1:9100": the first address it listens on. */
const char *metrics_address(const struct metrics_server *server);
/* Stop serving (open scrapes get a bounded drain) and free it. NULL is fine. */
void metrics_stop(struct metrics_server *server);

/* The exposition text for `stats` into out (at most cap bytes, NUL-terminated); returns the length it needs, as
 * snprintf does. */
size_t metrics_render(const ovl_stats *stats, const char *program, const char *backend, char *out, size_t cap);

#endif
