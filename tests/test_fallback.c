/*
 * test_fallback.c - the default backend where io_uring is forbidden: a seccomp filter makes io_uring_setup fail
 * with EPERM, as container runtimes do, and the engine must choose epoll, say why, and still echo.
 * Criterion runs each test in its own process, so the filter stays inside the test.
 */
#include "engine_fixture.h"
#include "overlap.h"
#include "support.h"

#include <criterion/criterion.h>

#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

static void forbid_io_uring(void)
{
    struct sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog program = {.len = sizeof filter / sizeof filter[0], .filter = filter};
    cr_assert(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0, "PR_SET_NO_NEW_PRIVS: %s", strerror(errno));
    cr_assert(prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program) == 0, "seccomp: %s", strerror(errno));
}

Test(fallback, io_uring_forbidden_chooses_epoll, .timeout = 30)
{
    forbid_io_uring();
    struct server server;
    server_create(&server, &(struct server_opts){ .threads = 1 }); /* the default backend */
    cr_assert_str_eq(ovl_engine_backend(server.engine), "epoll");
    const char *notice = ovl_engine_notice(server.engine);
    cr_assert(notice && strstr(notice, "io_uring_setup") && strstr(notice, "Operation not permitted"),
              "notice: %s", notice ? notice : "(none)");
    server_listen(&server);
    server_start_engine(&server);
    int fd = sup_connect("127.0.0.1", server.port, 5000);
    cr_assert(fd >= 0);
    cr_assert(sup_send_all(fd, "this is a test", 14) == 0);
    shutdown(fd, SHUT_WR);
    char reply[32];
    cr_assert(sup_recv_to_eof(fd, reply, sizeof reply, NULL) == 14);
    cr_assert(memcmp(reply, "this is a test", 14) == 0);
    close(fd);
    server_destroy(&server);
}

Test(fallback, io_uring_named_but_forbidden_fails_clearly, .timeout = 30)
{
    forbid_io_uring();
    ovl_config config;
    ovl_config_init(&config);
    config.backend = "io_uring";
    ovl_engine *engine = NULL;
    ovl_error_info err;
    memset(&err, 0, sizeof err);
    int rc = ovl_engine_create(&engine, &config, &err);
    cr_assert(rc == -EPERM, "create returned %d", rc);
    cr_assert_str_eq(err.what, "io_uring_setup");
}
