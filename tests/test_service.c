/*
 * test_service.c - overlap-echo as a Linux service: the systemd unit meson configured (systemd-analyze verify, the
 * installed path, the sandbox settings), readiness through a real notify socket (READY=1 only once the port
 * accepts, STOPPING=1 when SIGTERM starts the drain, sent by the main process), a failing notify socket reported,
 * --log-file, the Windows-only service commands refused with a pointer to the unit, and a restart on the same
 * port while the previous run's connections sit in TIME_WAIT.
 *
 * meson passes $OVERLAP_ECHO, $OVERLAP_SERVICE_UNIT (the configured unit), $OVERLAP_INSTALL_BINDIR and
 * $OVERLAP_SYSTEMD (1 when overlap-echo was built with libsystemd).
 */
#include "support.h"

#include <criterion/criterion.h>
#include <criterion/logging.h>

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define IO_TIMEOUT_MS 10000
#define START_TIMEOUT_MS 10000
#define EXIT_TIMEOUT_MS 10000

static void end_children(void)
{
    sup_proc_kill_all();
}

TestSuite(service, .fini = end_children, .timeout = 60);

static char *required_env(const char *name)
{
    char *value = getenv(name);
    cr_assert(value && *value, "%s is not set (run through meson test)", name);
    return value;
}

static char *echo_path(void)
{
    char *path = required_env("OVERLAP_ECHO");
    cr_assert(access(path, X_OK) == 0, "OVERLAP_ECHO=%s: %s", path, strerror(errno));
    return path;
}

static bool built_with_systemd(void)
{
    return strcmp(required_env("OVERLAP_SYSTEMD"), "1") == 0;
}

/* The backend under test goes to every server started here, as in test_echo_server.c. */
static void server_argv(char **argv, char *const args[])
{
    size_t n = 0;
    argv[n++] = echo_path();
    for (size_t i = 0; args[i]; i++)
        argv[n++] = args[i];
    char *backend = getenv("OVERLAP_TEST_BACKEND");
    if (backend && *backend) {
        argv[n++] = "--backend";
        argv[n++] = backend;
    }
    argv[n] = NULL;
}

static char *read_file(const char *path)
{
    FILE *file = fopen(path, "r");
    cr_assert(file, "open %s: %s", path, strerror(errno));
    static char text[65536];
    size_t length = fread(text, 1, sizeof text - 1, file);
    cr_assert(!ferror(file) && length < sizeof text - 1, "read %s", path);
    text[length] = '\0';
    fclose(file);
    return text;
}

static void write_file(const char *path, const char *text)
{
    FILE *file = fopen(path, "w");
    cr_assert(file, "create %s: %s", path, strerror(errno));
    cr_assert(fputs(text, file) >= 0 && fclose(file) == 0, "write %s: %s", path, strerror(errno));
}

static char *make_temp_dir(void)
{
    static char dir[64];
    snprintf(dir, sizeof dir, "/tmp/overlap-service-XXXXXX");
    cr_assert(mkdtemp(dir), "mkdtemp: %s", strerror(errno));
    return dir;
}

static void remove_tree(const char *dir)
{
    char command[256];
    snprintf(command, sizeof command, "rm -rf '%s'", dir);
    if (system(command) != 0)
        cr_log_warn("could not remove %s", dir);
}

/* ---- the unit ---- */

static const char *find_systemd_analyze(void)
{
    static const char *candidates[] = {"/usr/bin/systemd-analyze", "/bin/systemd-analyze", NULL};
    for (int i = 0; candidates[i]; i++)
        if (access(candidates[i], X_OK) == 0)
            return candidates[i];
    return NULL;
}

/* Run systemd-analyze verify on `unit_text` saved as overlap-echo.service in `dir`. The man page is offered
 * through MANPATH so that Documentation=man:overlap-echo(1) is checked against the page in the tree. Returns the
 * exit code; *output gets stdout and stderr (verify exits 0 on unknown keys and only warns: callers check both). */
static int verify_unit(const char *analyze, const char *dir, const char *unit_text, char *output, size_t cap)
{
    char path[256], man_dir[256], man_page[300];
    snprintf(path, sizeof path, "%s/overlap-echo.service", dir);
    write_file(path, unit_text);
    snprintf(man_dir, sizeof man_dir, "%s/man/man1", dir);
    char parent[256];
    snprintf(parent, sizeof parent, "%s/man", dir);
    mkdir(parent, 0700);
    mkdir(man_dir, 0700);
    snprintf(man_page, sizeof man_page, "%s/overlap-echo.1", man_dir);
    write_file(man_page, read_file(required_env("OVERLAP_ECHO_MAN")));
    setenv("MANPATH", parent, 1);
    sup_proc run = {0};
    char *argv[] = {(char *)analyze, "verify", path, NULL};
    int rc = sup_proc_run(&run, argv, 60000);
    cr_assert(rc == 0, "systemd-analyze verify did not finish: %s", strerror(-rc));
    snprintf(output, cap, "%s%s", run.out, run.err);
    int code = sup_proc_exit_code(&run);
    sup_proc_free(&run);
    return code;
}

Test(service, unit_names_the_installed_binary_and_sandbox)
{
    const char *unit = read_file(required_env("OVERLAP_SERVICE_UNIT"));
    char exec_start[600];
    snprintf(exec_start, sizeof exec_start, "\nExecStart=%s/overlap-echo ", required_env("OVERLAP_INSTALL_BINDIR"));
    cr_assert(strstr(unit, exec_start), "the unit does not start %s/overlap-echo:\n%s",
              required_env("OVERLAP_INSTALL_BINDIR"), unit);
    const char *type = built_with_systemd() ? "\nType=notify\n" : "\nType=exec\n";
    cr_assert(strstr(unit, type), "built %s libsystemd, the unit needs %s:\n%s",
              built_with_systemd() ? "with" : "without", type + 1, unit);
    static const char *settings[] = {"DynamicUser=yes", "NoNewPrivileges=yes", "ProtectSystem=strict",
                                     "ProtectHome=yes", "PrivateTmp=yes",
                                     "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX", "LimitNOFILE=1048576",
                                     "Restart=on-failure", "CapabilityBoundingSet=\n", NULL};
    for (int i = 0; settings[i]; i++) {
        char line[128];
        snprintf(line, sizeof line, "\n%s", settings[i]);
        cr_assert(strstr(unit, line), "the unit lacks %s", settings[i]);
    }
    /* An unsubstituted @NAME@ (the unit's own @system-service is lower case). */
    for (const char *at = strchr(unit, '@'); at; at = strchr(at + 1, '@')) {
        size_t name = strspn(at + 1, "ABCDEFGHIJKLMNOPQRSTUVWXYZ_");
        cr_assert(name == 0 || at[1 + name] != '@', "meson left %.*s in the unit", (int)name + 2, at);
    }
}

Test(service, unit_passes_systemd_analyze_verify)
{
    const char *analyze = find_systemd_analyze();
    if (!analyze) {
        fprintf(stderr, "unit_passes_systemd_analyze_verify: SKIPPED: systemd-analyze is not installed "
                        "(scripts/bootstrap installs the systemd package)\n");
        cr_skip_test("systemd-analyze is not installed (scripts/bootstrap installs the systemd package)");
    }
    /* verify insists that ExecStart's program exists: the installed path does not exist before meson install, so
     * the copy verified here starts the overlap-echo just built. Everything else is the configured unit. */
    const char *unit = read_file(required_env("OVERLAP_SERVICE_UNIT"));
    char installed[600];
    snprintf(installed, sizeof installed, "ExecStart=%s/overlap-echo ", required_env("OVERLAP_INSTALL_BINDIR"));
    const char *at = strstr(unit, installed);
    cr_assert(at, "no '%s' in the unit", installed);
    static char copy[70000];
    snprintf(copy, sizeof copy, "%.*sExecStart=%s %s", (int)(at - unit), unit, echo_path(), at + strlen(installed));
    char *dir = make_temp_dir();
    char output[8192];
    int code = verify_unit(analyze, dir, copy, output, sizeof output);
    cr_assert(code == 0 && output[0] == '\0', "systemd-analyze verify: exit %d:\n%s", code, output);

    /* The same harness notices a broken unit: verify only warns about an unknown key, with exit 0. */
    static char broken[sizeof copy + 64];
    const char *service_section = strstr(copy, "[Service]\n");
    cr_assert(service_section, "no [Service] section");
    size_t before = (size_t)(service_section - copy) + strlen("[Service]\n");
    snprintf(broken, sizeof broken, "%.*sNotASetting=1\n%s", (int)before, copy, copy + before);
    code = verify_unit(analyze, dir, broken, output, sizeof output);
    cr_assert(strstr(output, "NotASetting"), "verify did not flag an unknown key (exit %d): %s", code, output);
    remove_tree(dir);
}

/* ---- readiness over a notify socket ---- */

struct notify_socket {
    int fd;
    char path[100]; /* fits sockaddr_un's sun_path (108) */
};

static void notify_socket_open(struct notify_socket *notify, const char *dir)
{
    notify->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    cr_assert(notify->fd >= 0, "socket(AF_UNIX, SOCK_DGRAM): %s", strerror(errno));
    struct sockaddr_un address = {.sun_family = AF_UNIX};
    int length = snprintf(notify->path, sizeof notify->path, "%s/notify", dir);
    cr_assert(length > 0 && (size_t)length < sizeof notify->path, "socket path too long");
    snprintf(address.sun_path, sizeof address.sun_path, "%s", notify->path);
    cr_assert(bind(notify->fd, (struct sockaddr *)&address, sizeof address) == 0, "bind %s: %s", notify->path,
              strerror(errno));
    /* Each datagram then carries its sender's PID, as systemd checks it (NotifyAccess=main). */
    int on = 1;
    cr_assert(setsockopt(notify->fd, SOL_SOCKET, SO_PASSCRED, &on, sizeof on) == 0, "SO_PASSCRED: %s",
              strerror(errno));
}

/* One datagram into text; returns the sender's PID, or 0 on timeout. */
static pid_t notify_receive(struct notify_socket *notify, char *text, size_t cap, int timeout_ms)
{
    struct pollfd ready = {.fd = notify->fd, .events = POLLIN};
    int polled = poll(&ready, 1, timeout_ms);
    cr_assert(polled >= 0, "poll: %s", strerror(errno));
    if (polled == 0)
        return 0;
    union {
        struct cmsghdr header;
        char space[CMSG_SPACE(sizeof(struct ucred))];
    } control;
    struct iovec data = {.iov_base = text, .iov_len = cap - 1};
    struct msghdr message = {.msg_iov = &data, .msg_iovlen = 1, .msg_control = &control,
                             .msg_controllen = sizeof control};
    ssize_t length = recvmsg(notify->fd, &message, 0);
    cr_assert(length >= 0, "recvmsg: %s", strerror(errno));
    text[length] = '\0';
    struct cmsghdr *header = CMSG_FIRSTHDR(&message);
    cr_assert(header && header->cmsg_type == SCM_CREDENTIALS, "no sender credentials on \"%s\"", text);
    struct ucred credentials;
    memcpy(&credentials, CMSG_DATA(header), sizeof credentials);
    return credentials.pid;
}

static void require_systemd_build(const char *test)
{
    if (!built_with_systemd()) {
        fprintf(stderr, "%s: SKIPPED: overlap-echo was built without libsystemd (meson -Dsystemd=enabled needs "
                        "libsystemd-dev), so it sends no notifications\n", test);
        cr_skip_test("overlap-echo was built without libsystemd");
    }
}

static int read_listening_port(sup_proc *server)
{
    int port = sup_proc_listening_port(server, NULL, 0, START_TIMEOUT_MS);
    cr_assert(port > 0, "no \"listening on\" line with a port (%s); stderr: %s", strerror(-port), server->err);
    return port;
}

static void expect_echo(int fd, uint32_t seed, size_t len)
{
    unsigned char out[4096], in[4096];
    cr_assert(len <= sizeof out);
    sup_pattern_fill(out, len, seed, 0);
    cr_assert(sup_send_all(fd, out, len) == 0, "send: %s", strerror(errno));
    ssize_t got = sup_recv_exact(fd, in, len, NULL);
    cr_assert(got == (ssize_t)len, "echo: %zd of %zu bytes", got, len);
    cr_assert(sup_pattern_check(in, len, seed, 0) == len, "the echo differs");
}

Test(service, ready_after_listening_and_stopping_on_sigterm)
{
    require_systemd_build("ready_after_listening_and_stopping_on_sigterm");
    char *dir = make_temp_dir();
    struct notify_socket notify;
    notify_socket_open(&notify, dir);
    setenv("NOTIFY_SOCKET", notify.path, 1);
    sup_proc server = {0};
    char *argv[16];
    server_argv(argv, (char *[]){"--host", "127.0.0.1", "--port", "0", "--threads", "1", NULL});
    cr_assert(sup_proc_spawn(&server, argv) == 0);
    unsetenv("NOTIFY_SOCKET");

    /* The first notice must be READY=1, naming the address; the port must accept the moment it arrives. */
    char text[1024];
    pid_t sender = notify_receive(&notify, text, sizeof text, START_TIMEOUT_MS);
    cr_assert(sender != 0, "no READY=1 within %d ms; stderr: %s", START_TIMEOUT_MS, server.err);
    cr_assert(sender == server.pid, "notice from PID %d, the server is %d: %s", (int)sender, (int)server.pid, text);
    cr_assert(strncmp(text, "READY=1\n", 8) == 0, "first notice is not READY=1: \"%s\"", text);
    int port = 0;
    const char *status = strstr(text, "STATUS=listening on 127.0.0.1:");
    cr_assert(status && sscanf(status, "STATUS=listening on 127.0.0.1:%d", &port) == 1 && port > 0,
              "no listening address in \"%s\"", text);
    int fd = sup_connect("127.0.0.1", port, IO_TIMEOUT_MS);
    cr_assert(fd >= 0, "READY=1 came but port %d does not accept: %s", port, strerror(-fd));
    expect_echo(fd, 11, 1000);
    cr_assert(read_listening_port(&server) == port, "stdout names another port than the notice");

    /* SIGTERM with bytes in flight: STOPPING=1 announces the drain, the bytes still come back, exit 0. */
    unsigned char pending[3000], reply[3000];
    sup_pattern_fill(pending, sizeof pending, 12, 0);
    cr_assert(sup_send_all(fd, pending, sizeof pending) == 0);
    sup_sleep_ms(100);
    cr_assert(sup_proc_kill(&server, SIGTERM) == 0);
    sender = notify_receive(&notify, text, sizeof text, EXIT_TIMEOUT_MS);
    cr_assert(sender == server.pid, "no STOPPING=1 from the server after SIGTERM (got \"%s\" from %d)", text,
              (int)sender);
    cr_assert(strncmp(text, "STOPPING=1\n", 11) == 0, "notice after SIGTERM: \"%s\"", text);
    cr_assert(strstr(text, "\nEXTEND_TIMEOUT_USEC=10000000\n"), "the stop timeout is not extended over the 5 s "
              "drain plus 5 s: \"%s\"", text);
    cr_assert(strstr(text, "draining 1 open connection"), "status does not count the open connection: \"%s\"", text);
    ssize_t got = sup_recv_to_eof(fd, reply, sizeof reply, NULL);
    cr_assert(got == (ssize_t)sizeof pending, "after SIGTERM: %zd of %zu bytes, then EOF", got, sizeof pending);
    cr_assert(sup_pattern_check(reply, sizeof reply, 12, 0) == sizeof reply);
    close(fd);
    cr_assert(sup_proc_wait(&server, EXIT_TIMEOUT_MS) == 0 && sup_proc_exit_code(&server) == 0, "%s; stderr: %s",
              sup_proc_describe(&server), server.err);
    cr_assert(!strstr(server.err, "sd_notify"), "a notice failed: %s", server.err);
    sup_proc_free(&server);
    close(notify.fd);
    remove_tree(dir);
}

Test(service, stats_update_the_status_line)
{
    require_systemd_build("stats_update_the_status_line");
    char *dir = make_temp_dir();
    struct notify_socket notify;
    notify_socket_open(&notify, dir);
    setenv("NOTIFY_SOCKET", notify.path, 1);
    sup_proc server = {0};
    char *argv[16];
    server_argv(argv, (char *[]){"--host", "127.0.0.1", "--port", "0", "--threads", "1", "--stats", "0.2", NULL});
    cr_assert(sup_proc_spawn(&server, argv) == 0);
    unsetenv("NOTIFY_SOCKET");
    char text[1024];
    cr_assert(notify_receive(&notify, text, sizeof text, START_TIMEOUT_MS) == server.pid);
    cr_assert(strncmp(text, "READY=1\n", 8) == 0, "\"%s\"", text);
    int port = read_listening_port(&server);
    int fd = sup_connect("127.0.0.1", port, IO_TIMEOUT_MS);
    cr_assert(fd >= 0);
    expect_echo(fd, 13, 100);
    /* Within a few intervals a STATUS= line counts the open, accepted connection. */
    bool seen = false;
    for (int i = 0; i < 10 && !seen; i++) {
        cr_assert(notify_receive(&notify, text, sizeof text, 2000) == server.pid, "no status update");
        seen = strncmp(text, "STATUS=open 1, accepted 1, msgs/s ", 34) == 0;
    }
    cr_assert(seen, "no STATUS=open 1, accepted 1 line; last: \"%s\"", text);
    close(fd);
    sup_proc_kill(&server, SIGTERM);
    cr_assert(sup_proc_wait(&server, EXIT_TIMEOUT_MS) == 0 && sup_proc_exit_code(&server) == 0);
    sup_proc_free(&server);
    close(notify.fd);
    remove_tree(dir);
}

Test(service, unreachable_notify_socket_is_reported_and_serving_goes_on)
{
    require_systemd_build("unreachable_notify_socket_is_reported_and_serving_goes_on");
    char *dir = make_temp_dir();
    char missing[128];
    snprintf(missing, sizeof missing, "%s/nobody-listens", dir);
    setenv("NOTIFY_SOCKET", missing, 1);
    sup_proc server = {0};
    char *argv[16];
    server_argv(argv, (char *[]){"--host", "127.0.0.1", "--port", "0", "--threads", "1", NULL});
    cr_assert(sup_proc_spawn(&server, argv) == 0);
    unsetenv("NOTIFY_SOCKET");
    int port = read_listening_port(&server);
    int fd = sup_connect("127.0.0.1", port, IO_TIMEOUT_MS);
    cr_assert(fd >= 0);
    expect_echo(fd, 14, 100);
    close(fd);
    sup_proc_kill(&server, SIGTERM);
    cr_assert(sup_proc_wait(&server, EXIT_TIMEOUT_MS) == 0 && sup_proc_exit_code(&server) == 0);
    cr_assert(strstr(server.err, "overlap-echo: sd_notify READY=1: No such file or directory (errno 2)"),
              "stderr: %s", server.err);
    sup_proc_free(&server);
    remove_tree(dir);
}

/* ---- the command line ---- */

Test(service, windows_service_commands_point_to_the_unit)
{
    static const char *commands[][3] = {{"install", "--port", "7"}, {"uninstall", NULL, NULL},
                                        {"--service", NULL, NULL}};
    static const char *names[] = {"install", "uninstall", "--service"};
    for (int i = 0; i < 3; i++) {
        char *argv[] = {echo_path(), (char *)commands[i][0], (char *)commands[i][1], (char *)commands[i][2], NULL};
        sup_proc run = {0};
        cr_assert(sup_proc_run(&run, argv, EXIT_TIMEOUT_MS) == 0);
        char want[128];
        snprintf(want, sizeof want, "overlap-echo: %s: the Windows service is only on Windows", names[i]);
        cr_assert(sup_proc_exit_code(&run) == 2, "%s: %s", names[i], sup_proc_describe(&run));
        cr_assert(strstr(run.err, want) && strstr(run.err, "contrib/overlap-echo.service"), "%s: stderr: %s",
                  names[i], run.err);
        sup_proc_free(&run);
    }
    /* --start belongs to install; uninstall takes nothing. */
    char *start_argv[] = {echo_path(), "--start", "demand", NULL};
    sup_proc run = {0};
    cr_assert(sup_proc_run(&run, start_argv, EXIT_TIMEOUT_MS) == 0);
    cr_assert(sup_proc_exit_code(&run) == 2 && strstr(run.err, "--start: only with install"), "%s", run.err);
    sup_proc_free(&run);
    char *uninstall_argv[] = {echo_path(), "uninstall", "--port", "7", NULL};
    cr_assert(sup_proc_run(&run, uninstall_argv, EXIT_TIMEOUT_MS) == 0);
    cr_assert(sup_proc_exit_code(&run) == 2 && strstr(run.err, "uninstall takes only --name NAME (got '--port')"),
              "%s", run.err);
    sup_proc_free(&run);
    char *uninstall_extra_argv[] = {echo_path(), "uninstall", "--name", "a", "b", NULL};
    cr_assert(sup_proc_run(&run, uninstall_extra_argv, EXIT_TIMEOUT_MS) == 0);
    cr_assert(sup_proc_exit_code(&run) == 2 && strstr(run.err, "uninstall takes only --name NAME (got 'b')"), "%s",
              run.err);
    sup_proc_free(&run);
    /* --name becomes a registry key and an account name: bounded, plain characters, and only for the commands. */
    char long_name[80];
    memset(long_name, 'a', 65);
    long_name[65] = '\0';
    const char *bad_names[] = {"a b", "-x", "a\\b", "", long_name, "caf\xc3\xa9"};
    for (size_t i = 0; i < sizeof bad_names / sizeof bad_names[0]; i++) {
        char *name_argv[] = {echo_path(), "install", "--name", (char *)bad_names[i], NULL};
        cr_assert(sup_proc_run(&run, name_argv, EXIT_TIMEOUT_MS) == 0);
        cr_assert(sup_proc_exit_code(&run) == 2 && strstr(run.err, "--name: '") &&
                      strstr(run.err, "is not a service name (1-64 letters, digits"),
                  "--name '%s': %s", bad_names[i], run.err);
        sup_proc_free(&run);
    }
    char *serve_name_argv[] = {echo_path(), "--name", "x", NULL};
    cr_assert(sup_proc_run(&run, serve_name_argv, EXIT_TIMEOUT_MS) == 0);
    cr_assert(sup_proc_exit_code(&run) == 2 && strstr(run.err, "--name: only with install or uninstall"), "%s",
              run.err);
    sup_proc_free(&run);
    char *start_argv2[] = {echo_path(), "install", "--start", "later", NULL};
    cr_assert(sup_proc_run(&run, start_argv2, EXIT_TIMEOUT_MS) == 0);
    cr_assert(sup_proc_exit_code(&run) == 2 && strstr(run.err, "--start: 'later' is not auto, delayed or demand"),
              "%s", run.err);
    sup_proc_free(&run);
}

Test(service, log_file_takes_the_output)
{
    char *dir = make_temp_dir();
    char log[128];
    snprintf(log, sizeof log, "%s/echo.log", dir);
    sup_proc server = {0};
    char *argv[16];
    server_argv(argv, (char *[]){"--host", "127.0.0.1", "--port", "0", "--threads", "1", "--log-file", log, NULL});
    cr_assert(sup_proc_spawn(&server, argv) == 0);
    /* The port is only in the file now. */
    int port = 0;
    for (int64_t deadline = sup_now_ms() + START_TIMEOUT_MS; !port && sup_now_ms() < deadline;) {
        FILE *file = fopen(log, "r");
        char line[256];
        while (file && fgets(line, sizeof line, file))
            if (sscanf(line, "listening on 127.0.0.1:%d", &port) == 1)
                break;
        if (file)
            fclose(file);
        if (!port)
            sup_sleep_ms(50);
    }
    cr_assert(port > 0, "no listening line in %s", log);
    int fd = sup_connect("127.0.0.1", port, IO_TIMEOUT_MS);
    cr_assert(fd >= 0);
    expect_echo(fd, 15, 500);
    close(fd);
    sup_proc_kill(&server, SIGTERM);
    cr_assert(sup_proc_wait(&server, EXIT_TIMEOUT_MS) == 0 && sup_proc_exit_code(&server) == 0);
    cr_assert(server.out[0] == '\0' && server.err[0] == '\0', "output outside the log: %s %s", server.out,
              server.err);
    const char *text = read_file(log);
    cr_assert(strstr(text, "Terminated: stopping, finishing open connections"), "no stderr line in the log: %s",
              text);
    cr_assert(strstr(text, "overlap-echo: stopped after"), "no summary in the log: %s", text);
    sup_proc_free(&server);

    char *bad_argv[] = {echo_path(), "--port", "0", "--log-file", "/nonexistent-dir/echo.log", NULL};
    sup_proc bad = {0};
    cr_assert(sup_proc_run(&bad, bad_argv, EXIT_TIMEOUT_MS) == 0);
    cr_assert(sup_proc_exit_code(&bad) == 1, "%s", sup_proc_describe(&bad));
    cr_assert(strstr(bad.err, "overlap-echo: --log-file /nonexistent-dir/echo.log: No such file or directory "
                              "(errno 2)"), "stderr: %s", bad.err);
    sup_proc_free(&bad);
    remove_tree(dir);
}

/* ---- restart on the same port ---- */

Test(service, restart_on_the_same_port_with_connections_in_time_wait)
{
    sup_proc first = {0};
    char *argv[16];
    server_argv(argv, (char *[]){"--host", "127.0.0.1", "--port", "0", "--threads", "1", NULL});
    cr_assert(sup_proc_spawn(&first, argv) == 0);
    int port = read_listening_port(&first);
    enum { CONNS = 8 };
    int fds[CONNS];
    for (int i = 0; i < CONNS; i++) {
        fds[i] = sup_connect("127.0.0.1", port, IO_TIMEOUT_MS);
        cr_assert(fds[i] >= 0, "connect: %s", strerror(-fds[i]));
        expect_echo(fds[i], (uint32_t)(20 + i), 200);
    }
    /* The server closes first (its drain shuts the connections down), so its side of each one ends in
     * TIME_WAIT on the listening port: the state a restart by systemd (Restart=on-failure) meets. */
    cr_assert(sup_proc_kill(&first, SIGTERM) == 0);
    for (int i = 0; i < CONNS; i++) {
        char rest[16];
        cr_assert(sup_recv_to_eof(fds[i], rest, sizeof rest, NULL) == 0, "connection %d: no EOF", i);
        close(fds[i]);
    }
    cr_assert(sup_proc_wait(&first, EXIT_TIMEOUT_MS) == 0 && sup_proc_exit_code(&first) == 0, "%s",
              sup_proc_describe(&first));
    int waiting = sup_count_time_wait(port);
    cr_assert(waiting > 0, "no TIME_WAIT socket on port %d: the test would prove nothing", port);

    char port_text[16];
    snprintf(port_text, sizeof port_text, "%d", port);
    sup_proc second = {0};
    server_argv(argv, (char *[]){"--host", "127.0.0.1", "--port", port_text, "--threads", "1", NULL});
    cr_assert(sup_proc_spawn(&second, argv) == 0);
    int rc = sup_proc_listening_port(&second, NULL, 0, START_TIMEOUT_MS);
    if (rc < 0)
        sup_proc_wait(&second, 1000);
    cr_assert(rc == port, "restart on port %d with %d sockets in TIME_WAIT failed (%d): %s; stderr: %s", port,
              waiting, rc, sup_proc_describe(&second), second.err);
    int fd = sup_connect("127.0.0.1", port, IO_TIMEOUT_MS);
    cr_assert(fd >= 0);
    expect_echo(fd, 30, 300);
    close(fd);
    cr_log_info("restarted on port %d with %d sockets in TIME_WAIT", port, waiting);
    sup_proc_kill(&second, SIGTERM);
    cr_assert(sup_proc_wait(&second, EXIT_TIMEOUT_MS) == 0 && sup_proc_exit_code(&second) == 0);
    sup_proc_free(&first);
    sup_proc_free(&second);
}
