/*
 * embed_echo.c - the smallest program embedding liboverlap, built against an installed copy with
 *   cc embed_echo.c $(pkg-config --cflags --libs overlap)
 * It echoes on an ephemeral 127.0.0.1 port, prints the port, and stops after SECONDS (argv[1], default 2).
 * scripts/test-install builds and runs it against a temporary `meson install`.
 */
#include <overlap.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
static void on_data(ovl_conn *conn, ovl_buf *buf) { ovl_send_buf(conn, buf); }
int main(int argc, char **argv)
{
    int seconds = argc > 1 ? atoi(argv[1]) : 2;
    ovl_config config;
    ovl_config_init(&config);
    config.threads = 1;
    ovl_engine *engine;
    ovl_listener *listener;
    ovl_error_info err;
    static const ovl_callbacks echo = {.on_data = on_data};
    if (ovl_engine_create(&engine, &config, &err) < 0 || ovl_listen(engine, "127.0.0.1", "0", &echo, NULL, &listener, &err) < 0 ||
        ovl_engine_start(engine, &err) < 0) {
        fprintf(stderr, "%s: %s\n", err.what, err.text);
        return 1;
    }
    printf("%d\n", ovl_listener_port(listener));
    fflush(stdout);
    sleep((unsigned)seconds);
    ovl_engine_destroy(engine);
    return 0;
}
