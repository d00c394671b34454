/*
 * test_wine_service.c - overlap-echo.exe as a Windows service under Wine's Service Control Manager (services.exe):
 * "overlap-echo install" registers it (checked in the registry), "sc start" runs it, Linux clients echo through
 * it, "sc stop" drains an open connection and the SCM sees STOP_PENDING then STOPPED with exit code 0,
 * "overlap-echo uninstall" stops a running service and removes it. Also: a start that fails (port taken) ends as
 * SERVICE_STOPPED with ERROR_SERVICE_SPECIFIC_ERROR and exit code 1, --service outside the SCM, install twice,
 * uninstall of nothing. What Wine does differently is asserted as such and listed in docs/OPERATING.md.
 *
 * $OVERLAP_WIN_DIR holds overlap-echo.exe; Wine runs with the private prefix <OVERLAP_WIN_DIR>/wineprefix. Wine
 * ends services (SERVICE_CONTROL_SHUTDOWN) once no ordinary Wine process is left, so the tests keep the prefix's
 * wineserver persistent (wineserver -p) while they run and end it with wineserver -k. One test at a time: the
 * service name is one per prefix.
 */
#include "support.h"

#include <criterion/criterion.h>
#include <criterion/logging.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define WINE_TIMEOUT_MS 120000 /* one wine command; the first may create the prefix */
#define IO_TIMEOUT_MS 20000
#define STATE_TIMEOUT_MS 60000

/* SCM states as "sc query" prints them. */
#define STATE_STOPPED 1
#define STATE_START_PENDING 2
#define STATE_STOP_PENDING 3
#define STATE_RUNNING 4

static char temp_dir[64];

static const char *win_dir(void)
{
    const char *dir = getenv("OVERLAP_WIN_DIR");
    cr_assert(dir && *dir, "OVERLAP_WIN_DIR is not set (run through meson test)");
    return dir;
}

static char *echo_exe(void)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/overlap-echo.exe", win_dir());
    cr_assert(access(path, R_OK) == 0, "%s: %s (build the Windows programs: scripts/build-windows)", path,
              strerror(errno));
    return path;
}

static char *find_program(const char *const candidates[], const char *what)
{
    for (int i = 0; candidates[i]; i++)
        if (access(candidates[i], X_OK) == 0)
            return (char *)candidates[i];
    cr_assert_fail("%s is not installed (scripts/bootstrap --windows installs wine64 and wine)", what);
    return NULL;
}

static char *wine_path(void)
{
    static const char *const candidates[] = {"/usr/bin/wine", "/usr/lib/wine/wine64", NULL};
    return find_program(candidates, "wine");
}

static char *wineserver_path(void)
{
    static const char *const candidates[] = {"/usr/bin/wineserver", "/usr/lib/wine/wineserver64", NULL};
    return find_program(candidates, "wineserver");
}

static void wine_environment(void)
{
    static char prefix[600];
    snprintf(prefix, sizeof prefix, "%s/wineprefix", win_dir());
    setenv("WINEPREFIX", prefix, 1);
    setenv("WINEDEBUG", "-all", 1);
    setenv("WINEDLLOVERRIDES", "mscoree,mshtml=", 1);
}

/* Run a command to completion; the caller reads out/err and frees. */
static int run(sup_proc *proc, char *const argv[])
{
    memset(proc, 0, sizeof *proc);
    int rc = sup_proc_run(proc, argv, WINE_TIMEOUT_MS);
    cr_assert(rc == 0, "%s %s did not finish: %s; stdout %s stderr %s", argv[0], argv[1], strerror(-rc),
              proc->out ? proc->out : "", proc->err ? proc->err : "");
    return sup_proc_exit_code(proc);
}

/* wine overlap-echo.exe ARGS... */
static int run_echo(sup_proc *proc, char *const args[])
{
    char *argv[32] = {wine_path(), echo_exe()};
    size_t n = 2;
    for (size_t i = 0; args[i] && n < 31; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    return run(proc, argv);
}

/* wine sc COMMAND NAME */
static int run_sc_named(sup_proc *proc, const char *command, const char *name)
{
    char *argv[] = {wine_path(), "sc", (char *)command, (char *)name, NULL};
    return run(proc, argv);
}

/* wine sc COMMAND overlap-echo */
static int run_sc(sup_proc *proc, const char *command)
{
    return run_sc_named(proc, command, "overlap-echo");
}

struct service_state {
    int state;                   /* STATE_*, or 0 when sc query failed (not installed) */
    unsigned long win32_exit;    /* WIN32_EXIT_CODE */
    unsigned long service_exit;  /* SERVICE_EXIT_CODE */
    unsigned long checkpoint;    /* CHECKPOINT */
    unsigned long wait_hint;     /* WAIT_HINT, ms */
    char text[1024];
};

static void query_named(const char *name, struct service_state *state)
{
    sup_proc query;
    int code = run_sc_named(&query, "query", name);
    memset(state, 0, sizeof *state);
    snprintf(state->text, sizeof state->text, "%s%s", query.out, query.err);
    const char *at;
    if (code == 0 && (at = strstr(query.out, "STATE")) && (at = strchr(at, ':')))
        state->state = atoi(at + 1);
    if ((at = strstr(query.out, "WIN32_EXIT_CODE")) && (at = strchr(at, ':')))
        state->win32_exit = strtoul(at + 1, NULL, 10);
    if ((at = strstr(query.out, "SERVICE_EXIT_CODE")) && (at = strchr(at, ':')))
        state->service_exit = strtoul(at + 1, NULL, 10);
    if ((at = strstr(query.out, "CHECKPOINT")) && (at = strchr(at, ':')))
        state->checkpoint = strtoul(at + 1, NULL, 0);
    if ((at = strstr(query.out, "WAIT_HINT")) && (at = strchr(at, ':')))
        state->wait_hint = strtoul(at + 1, NULL, 0);
    sup_proc_free(&query);
}

static void query_state(struct service_state *state)
{
    query_named("overlap-echo", state);
}

static void wait_for_named_state(const char *name, int wanted, struct service_state *state)
{
    int64_t deadline = sup_now_ms() + STATE_TIMEOUT_MS;
    for (;;) {
        query_named(name, state);
        if (state->state == wanted)
            return;
        cr_assert(sup_now_ms() < deadline, "%s did not reach state %d within %d ms; sc query: %s", name, wanted,
                  STATE_TIMEOUT_MS, state->text);
        sup_sleep_ms(300);
    }
}

static void wait_for_state(int wanted, struct service_state *state)
{
    wait_for_named_state("overlap-echo", wanted, state);
}

/* Every service name the tests install. */
static const char *const service_names[] = {"overlap-echo", "overlap-echo-a", "overlap-echo-b", "overlap-echo-delayed",
                                            NULL};

/* Leave no service behind from an earlier, interrupted run. */
static void remove_leftover_service(void)
{
    for (int i = 0; service_names[i]; i++) {
        sup_proc proc;
        char *args[] = {"uninstall", "--name", (char *)service_names[i], NULL};
        int code = run_echo(&proc, args);
        cr_assert(code == 0 || strstr(proc.err, "(error 1060)"), "cleaning up: uninstall --name %s: exit %d: %s%s",
                  service_names[i], code, proc.out, proc.err);
        sup_proc_free(&proc);
    }
}

static void fresh_wineserver(void)
{
    sup_proc server;
    char *kill_argv[] = {wineserver_path(), "-k", NULL};
    run(&server, kill_argv); /* exit 1 when none was running */
    sup_proc_free(&server);
    char *argv[] = {wineserver_path(), "-p", NULL};
    int code = run(&server, argv);
    cr_assert(code == 0, "wineserver -p: exit %d: %s%s", code, server.out, server.err);
    sup_proc_free(&server);
}

static void suite_setup(void)
{
    wine_environment();
    snprintf(temp_dir, sizeof temp_dir, "/tmp/overlap-wine-service-XXXXXX");
    cr_assert(mkdtemp(temp_dir), "mkdtemp: %s", strerror(errno));
    /* A fresh, persistent wineserver for this prefix: without a user process left, an ordinary one ends the
     * session and stops the service (SERVICE_CONTROL_SHUTDOWN); and a running one (from an earlier test of this
     * prefix) refuses -p. The tests of a prefix run one at a time, so the only Wine processes ended here are the
     * previous test's. */
    fresh_wineserver();
    remove_leftover_service();
}

/* The system environment (HKLM), from which Wine's services.exe builds every service's environment: once per
 * session, with CreateEnvironmentBlock, at its first start (Wine's own automatic services start with the session).
 * So the variable is set, then the session restarted; suite_setup gives the next test a session of its own, and
 * the variable is removed at the end of the test (in suite_teardown too, for a test that failed half-way). */
#define SYSTEM_ENVIRONMENT_KEY "HKLM\\System\\CurrentControlSet\\Control\\Session Manager\\Environment"

static bool system_fault_set;

static void set_system_fault(const char *faults)
{
    char *argv[] = {wine_path(), "reg", "add", SYSTEM_ENVIRONMENT_KEY, "/v", "OVERLAP_TEST_FAULTS", "/d",
                    (char *)faults, "/f", NULL};
    sup_proc proc;
    system_fault_set = true;
    int code = run(&proc, argv);
    cr_assert(code == 0, "reg add OVERLAP_TEST_FAULTS: exit %d: %s%s", code, proc.out, proc.err);
    sup_proc_free(&proc);
    fresh_wineserver();
}

static void clear_system_fault(void)
{
    if (!system_fault_set)
        return;
    char *argv[] = {wine_path(), "reg", "delete", SYSTEM_ENVIRONMENT_KEY, "/v", "OVERLAP_TEST_FAULTS", "/f", NULL};
    sup_proc proc;
    if (sup_proc_run(&proc, argv, WINE_TIMEOUT_MS) != 0 || sup_proc_exit_code(&proc) != 0)
        cr_log_warn("could not remove OVERLAP_TEST_FAULTS from the prefix's system environment: %s%s",
                    proc.out ? proc.out : "", proc.err ? proc.err : "");
    sup_proc_free(&proc);
    system_fault_set = false;
}

static void suite_teardown(void)
{
    sup_proc_kill_all();
    clear_system_fault(); /* a test that failed half-way must not leave its fault to the next */
    sup_proc proc;
    for (int i = 0; service_names[i]; i++) {
        char *uninstall[] = {wine_path(), echo_exe(), "uninstall", "--name", (char *)service_names[i], NULL};
        if (sup_proc_run(&proc, uninstall, WINE_TIMEOUT_MS) == 0 && sup_proc_exit_code(&proc) == 0)
            cr_log_warn("a test left the service %s installed; removed it: %s", service_names[i], proc.out);
        sup_proc_free(&proc);
    }
    /* End every Wine process of this prefix (the services, the persistent wineserver): nothing outlives the run. */
    char *kill_argv[] = {wineserver_path(), "-k", NULL};
    sup_proc_run(&proc, kill_argv, 30000);
    sup_proc_free(&proc);
    char command[128];
    snprintf(command, sizeof command, "rm -rf '%s'", temp_dir);
    if (system(command) != 0)
        cr_log_warn("could not remove %s", temp_dir);
}

TestSuite(wine_service, .init = suite_setup, .fini = suite_teardown, .timeout = 400);

/* The log file in Linux terms and as the service sees it (Z: is /). */
#define LOG_PATH_SIZE 200

static void log_paths(const char *name, char linux_path[LOG_PATH_SIZE], char windows_path[LOG_PATH_SIZE + 2])
{
    snprintf(linux_path, LOG_PATH_SIZE, "%s/%s", temp_dir, name);
    snprintf(windows_path, LOG_PATH_SIZE + 2, "Z:%.*s", LOG_PATH_SIZE - 1, linux_path);
    for (char *c = windows_path; *c; c++)
        if (*c == '/')
            *c = '\\';
}

static char *read_log(const char *path)
{
    static char text[65536];
    text[0] = '\0';
    FILE *file = fopen(path, "r");
    if (!file)
        return text;
    size_t length = fread(text, 1, sizeof text - 1, file);
    text[length] = '\0';
    fclose(file);
    return text;
}

/* The port from the service's "listening on" line in its log. */
static int wait_for_listening(const char *log)
{
    int64_t deadline = sup_now_ms() + STATE_TIMEOUT_MS;
    for (;;) {
        const char *at = strstr(read_log(log), "listening on 127.0.0.1:");
        if (at)
            return atoi(at + strlen("listening on 127.0.0.1:"));
        cr_assert(sup_now_ms() < deadline, "no listening line in %s within %d ms: %s", log, STATE_TIMEOUT_MS,
                  read_log(log));
        sup_sleep_ms(200);
    }
}

/* Wine 8.0's ChangeServiceConfig2 knows neither SERVICE_CONFIG_FAILURE_ACTIONS_FLAG nor
 * SERVICE_CONFIG_SERVICE_SID_INFO: install reports each and goes on (docs/WINDOWS.md). On Windows both succeed and
 * nothing is printed. Anything else on stderr fails the test. */
static void expect_only_known_warnings(const char *err)
{
    static const char *const known[] = {
        "overlap-echo: install: ChangeServiceConfig2 (failure actions on a non-zero exit code): Invalid level "
        "(error 124)\n",
        "overlap-echo: install: warning: this system restarts the service only when it crashes, not when it exits "
        "with an error\n",
        "overlap-echo: install: ChangeServiceConfig2 (service SID): Invalid level (error 124)\n",
        "overlap-echo: install: warning: the service runs without its own SID in its token\n",
        NULL};
    /* The C runtime writes text-mode line ends: compare without the \r. */
    char rest[4096];
    size_t length = 0;
    for (const char *c = err; *c && length + 1 < sizeof rest; c++)
        if (*c != '\r')
            rest[length++] = *c;
    rest[length] = '\0';
    for (int i = 0; known[i]; i++) {
        char *at = strstr(rest, known[i]);
        if (at)
            memmove(at, at + strlen(known[i]), strlen(at + strlen(known[i])) + 1);
    }
    cr_assert(rest[0] == '\0', "install: unexpected stderr: %s (all of it: %s)", rest, err);
}

static void install(const char *windows_log, const char *port)
{
    sup_proc proc;
    char *args[] = {"install", "--start", "demand", "--host", "127.0.0.1", "--port", (char *)port, "--threads",
                    "1", "--log-file", (char *)windows_log, NULL};
    int code = run_echo(&proc, args);
    cr_assert(code == 0, "install: exit %d: %s%s", code, proc.out, proc.err);
    cr_assert(strstr(proc.out, "overlap-echo: installed service overlap-echo (start on demand"), "%s", proc.out);
    expect_only_known_warnings(proc.err);
    sup_proc_free(&proc);
}

static void uninstall(void)
{
    sup_proc proc;
    char *args[] = {"uninstall", NULL};
    int code = run_echo(&proc, args);
    cr_assert(code == 0, "uninstall: exit %d: %s%s", code, proc.out, proc.err);
    cr_assert(strstr(proc.out, "overlap-echo: removed service overlap-echo"), "%s", proc.out);
    sup_proc_free(&proc);
}

static void start_service(void)
{
    sup_proc proc;
    int code = run_sc(&proc, "start");
    cr_assert(code == 0, "sc start overlap-echo: exit %d: %s%s", code, proc.out, proc.err);
    sup_proc_free(&proc);
}

static void expect_echo(int fd, uint32_t seed, size_t len)
{
    unsigned char out[8192], in[8192];
    cr_assert(len <= sizeof out);
    sup_pattern_fill(out, len, seed, 0);
    cr_assert(sup_send_all(fd, out, len) == 0);
    cr_assert(sup_recv_exact(fd, in, len, NULL) == (ssize_t)len, "echo of %zu bytes incomplete", len);
    cr_assert(sup_pattern_check(in, len, seed, 0) == len, "the echo differs");
}

/* A connection with `pending` bytes sent but not yet read back, for a stop to drain. */
static int connect_with_pending(int port, unsigned char *pending, size_t len)
{
    int fd = sup_connect("127.0.0.1", port, IO_TIMEOUT_MS);
    cr_assert(fd >= 0, "connect to the service on port %d: %s", port, strerror(-fd));
    expect_echo(fd, 40, 1000);
    sup_pattern_fill(pending, len, 41, 0);
    cr_assert(sup_send_all(fd, pending, len) == 0);
    sup_sleep_ms(200);
    return fd;
}

static void expect_drained(int fd, size_t len)
{
    unsigned char reply[8192];
    size_t got = 0;
    ssize_t rc = sup_recv_to_eof(fd, reply, sizeof reply, &got);
    cr_assert(rc == (ssize_t)len, "after the stop: %zu of %zu bytes (rc %zd), then EOF expected", got, len, rc);
    cr_assert(sup_pattern_check(reply, len, 41, 0) == len, "the drained echo differs");
    close(fd);
}

/* An event source of the name asked for that another program registered: install refuses the name and leaves the
 * source as it was (it used to overwrite its message file, and its undo deleted the key). */
Test(wine_service, another_programs_event_source_is_left_alone)
{
    static char key[] = "HKLM\\System\\CurrentControlSet\\Services\\EventLog\\Application\\overlap-echo-foreign";
    sup_proc proc;
    char *add_argv[] = {wine_path(), "reg", "add", key, "/v", "EventMessageFile", "/t", "REG_EXPAND_SZ", "/d",
                        "C:\\Program Files\\Other\\other.dll", "/f", NULL};
    cr_assert(run(&proc, add_argv) == 0, "reg add: %s%s", proc.out, proc.err);
    sup_proc_free(&proc);
    char *args[] = {"install", "--name", "overlap-echo-foreign", "--start", "demand", "--port", "0", NULL};
    int code = run_echo(&proc, args);
    cr_assert_eq(code, 1, "install over another program's event source: exit %d: %s%s", code, proc.out, proc.err);
    cr_assert(strstr(proc.err, "another program has an event log source named overlap-echo-foreign"), "stderr: %s",
              proc.err);
    sup_proc_free(&proc);
    char *query_argv[] = {wine_path(), "reg", "query", key, NULL};
    cr_assert(run(&proc, query_argv) == 0, "the other program's source is gone: %s%s", proc.out, proc.err);
    cr_assert(strstr(proc.out, "other.dll") && !strstr(proc.out, "overlap-echo.exe"), "source now: %s", proc.out);
    sup_proc_free(&proc);
    char *service_argv[] = {wine_path(), "reg", "query", "HKLM\\System\\CurrentControlSet\\Services\\overlap-echo-foreign",
                            NULL};
    cr_assert(run(&proc, service_argv) != 0, "the refused install left its service: %s", proc.out);
    sup_proc_free(&proc);
    char *delete_argv[] = {wine_path(), "reg", "delete", key, "/f", NULL};
    run(&proc, delete_argv);
    sup_proc_free(&proc);
}

Test(wine_service, install_start_echo_stop_uninstall)
{
    char log[LOG_PATH_SIZE], windows_log[LOG_PATH_SIZE + 2];
    log_paths("service.log", log, windows_log);
    install(windows_log, "0");

    /* What the SCM holds: --service plus the options, demand start, the service's virtual account. */
    sup_proc reg;
    char *reg_argv[] = {wine_path(), "reg", "query", "HKLM\\System\\CurrentControlSet\\Services\\overlap-echo", NULL};
    cr_assert(run(&reg, reg_argv) == 0, "reg query: %s%s", reg.out, reg.err);
    cr_assert(strstr(reg.out, "overlap-echo.exe --service --host 127.0.0.1 --port 0 --threads 1 --log-file Z:\\tmp"),
              "ImagePath: %s", reg.out);
    cr_assert(strstr(reg.out, "Start    REG_DWORD    0x3"), "not a demand start: %s", reg.out);
    cr_assert(strstr(reg.out, "ObjectName    REG_SZ    NT SERVICE\\overlap-echo"), "account: %s", reg.out);
    /* At system shutdown the drain gets --drain-timeout (5 s) + 5 s, not the SCM's default. */
    cr_assert(strstr(reg.out, "PreshutdownTimeout    REG_DWORD    0x2710"), "preshutdown timeout: %s", reg.out);
    /* The event log source the service reports start-up failures to: this executable's message table. */
    char *source_argv[] = {wine_path(), "reg", "query",
                           "HKLM\\System\\CurrentControlSet\\Services\\EventLog\\Application\\overlap-echo", NULL};
    sup_proc source;
    cr_assert(run(&source, source_argv) == 0, "no event log source after install: %s%s", source.out, source.err);
    cr_assert(strstr(source.out, "EventMessageFile    REG_EXPAND_SZ    ") && strstr(source.out, "overlap-echo.exe") &&
                  strstr(source.out, "TypesSupported    REG_DWORD    0x7"),
              "event log source: %s", source.out);
    sup_proc_free(&source);
    /* Wine 8.0 accepts SERVICE_CONFIG_FAILURE_ACTIONS and stores nothing (Windows writes FailureActions). */
    cr_log_info("failure actions stored by this SCM: %s", strstr(reg.out, "FailureActions") ? "yes" : "no");
    sup_proc_free(&reg);

    /* Installing again names the conflict. */
    sup_proc again;
    char *again_args[] = {"install", "--port", "1", NULL};
    cr_assert(run_echo(&again, again_args) == 1, "second install: %s", sup_proc_describe(&again));
    cr_assert(strstr(again.err, "overlap-echo: install: CreateService overlap-echo: ") &&
                  strstr(again.err, "(error 1073)"),
              "stderr: %s", again.err);
    sup_proc_free(&again);

    start_service();
    int port = wait_for_listening(log);
    struct service_state state;
    wait_for_state(STATE_RUNNING, &state);

    /* Traffic from Linux: single connections and a short load run. */
    int fd = sup_connect("127.0.0.1", port, IO_TIMEOUT_MS);
    cr_assert(fd >= 0, "connect: %s", strerror(-fd));
    expect_echo(fd, 42, 5000);
    close(fd);
    char *load = getenv("OVERLAP_LOAD");
    cr_assert(load && access(load, X_OK) == 0, "OVERLAP_LOAD is not set");
    char port_text[16];
    snprintf(port_text, sizeof port_text, "%d", port);
    sup_proc load_run;
    char *load_argv[] = {load, "127.0.0.1", "--port", port_text, "--connections", "4", "--duration", "1.5",
                         "--warmup", "0.3", "--json", NULL};
    int load_code = run(&load_run, load_argv);
    cr_assert(load_code == 0 && strstr(load_run.out, "\"errors\":{\"total\":0"), "overlap-load: exit %d: %s %s",
              load_code, load_run.out, load_run.err);
    sup_proc_free(&load_run);

    /* sc stop with bytes in flight: STOP_PENDING with the drain's wait hint, the bytes come back, then STOPPED
     * with exit code 0 and the summary in the log. */
    unsigned char pending[6000];
    fd = connect_with_pending(port, pending, sizeof pending);
    sup_proc stop;
    int stop_code = run_sc(&stop, "stop");
    cr_assert(stop_code == 0, "sc stop: exit %d: %s%s", stop_code, stop.out, stop.err);
    cr_assert(strstr(stop.out, "STOP_PENDING") || strstr(stop.out, "STOPPED"), "sc stop: %s", stop.out);
    if (strstr(stop.out, "STOP_PENDING"))
        cr_assert(strstr(stop.out, "WAIT_HINT          : 0x2710"), "no 10 s wait hint (5 s drain + 5 s): %s",
                  stop.out);
    sup_proc_free(&stop);
    expect_drained(fd, sizeof pending);
    wait_for_state(STATE_STOPPED, &state);
    cr_assert(state.win32_exit == 0 && state.service_exit == 0, "exit codes after a graceful stop: %s", state.text);
    const char *text = read_log(log);
    cr_assert(strstr(text, "overlap-echo: service stop: stopping, finishing open connections"), "log: %s", text);
    cr_assert(strstr(text, "overlap-echo: stopped after"), "no summary in the log: %s", text);
    cr_log_info("service log: %s", text);

    uninstall();
    query_state(&state);
    cr_assert(state.state == 0, "the service is still known after uninstall: %s", state.text);
    cr_assert(run(&source, source_argv) != 0, "the event log source is left after uninstall: %s", source.out);
    sup_proc_free(&source);
}

Test(wine_service, uninstall_drains_a_running_service_first)
{
    char log[LOG_PATH_SIZE], windows_log[LOG_PATH_SIZE + 2];
    log_paths("uninstall.log", log, windows_log);
    install(windows_log, "0");
    start_service();
    int port = wait_for_listening(log);
    struct service_state state;
    wait_for_state(STATE_RUNNING, &state);
    unsigned char pending[4000];
    int fd = connect_with_pending(port, pending, sizeof pending);

    sup_proc proc;
    char *args[] = {"uninstall", NULL};
    int code = run_echo(&proc, args);
    cr_assert(code == 0, "uninstall of a running service: exit %d: %s%s", code, proc.out, proc.err);
    cr_assert(strstr(proc.out, "overlap-echo: stopping service overlap-echo (running;"), "%s", proc.out);
    cr_assert(strstr(proc.out, "overlap-echo: service stopped (exit code 0, service exit code 0)"), "%s", proc.out);
    cr_assert(strstr(proc.out, "overlap-echo: removed service overlap-echo"), "%s", proc.out);
    sup_proc_free(&proc);
    expect_drained(fd, sizeof pending);
    cr_assert(strstr(read_log(log), "overlap-echo: stopped after"), "log: %s", read_log(log));
    query_state(&state);
    cr_assert(state.state == 0, "still installed: %s", state.text);
}

/* A service that is still starting accepts no control: uninstall's stop failed with 1061
 * (ERROR_SERVICE_CANNOT_ACCEPT_CTRL) and left it installed. Now uninstall waits for the start to end (bounded), then
 * stops and removes it. The start is held in START_PENDING for 8 s by a test fault of overlap-echo's. */
Test(wine_service, uninstall_waits_for_a_service_that_is_still_starting)
{
    char log[LOG_PATH_SIZE], windows_log[LOG_PATH_SIZE + 2];
    log_paths("starting.log", log, windows_log);
    install(windows_log, "0");
    set_system_fault("slow-service-start");
    start_service();
    struct service_state state;
    query_state(&state);
    cr_assert(state.state == STATE_START_PENDING, "the fault should hold the start: %s", state.text);

    sup_proc proc;
    char *args[] = {"uninstall", NULL};
    int code = run_echo(&proc, args);
    cr_assert(code == 0, "uninstall of a starting service: exit %d: %s%s", code, proc.out, proc.err);
    cr_assert(strstr(proc.out, "is still starting"), "%s", proc.out);
    cr_assert(strstr(proc.out, "overlap-echo: service stopped (exit code 0, service exit code 0)"), "%s", proc.out);
    cr_assert(strstr(proc.out, "overlap-echo: removed service overlap-echo"), "%s", proc.out);
    sup_proc_free(&proc);
    const char *text = read_log(log);
    cr_assert(strstr(text, "overlap-echo: warning: OVERLAP_TEST_FAULTS=slow-service-start: a test fault is on"),
              "log: %s", text);
    cr_assert(strstr(text, "overlap-echo: stopped after"), "log: %s", text);
    query_state(&state);
    cr_assert(state.state == 0, "still installed: %s", state.text);
    clear_system_fault();
}

Test(wine_service, failed_start_ends_with_a_service_specific_exit_code)
{
    /* The port is taken by a Linux listener, so the service's bind fails. */
    int port = 0;
    int holder = sup_tcp_bind("127.0.0.1", 0, true, &port);
    cr_assert(holder >= 0, "bind: %s", strerror(-holder));
    char port_text[16], log[LOG_PATH_SIZE], windows_log[LOG_PATH_SIZE + 2];
    snprintf(port_text, sizeof port_text, "%d", port);
    log_paths("failed.log", log, windows_log);
    install(windows_log, port_text);
    sup_proc proc;
    run_sc(&proc, "start"); /* START_PENDING or already failed: the state below is what counts */
    sup_proc_free(&proc);
    struct service_state state;
    wait_for_state(STATE_STOPPED, &state);
    /* ERROR_SERVICE_SPECIFIC_ERROR (1066) with overlap-echo's exit code 1. */
    cr_assert(state.win32_exit == 1066 && state.service_exit == 1, "after a failed start: %s", state.text);
    char want[64];
    snprintf(want, sizeof want, "overlap-echo: bind 127.0.0.1:%d: ", port);
    const char *text = read_log(log);
    cr_assert(strstr(text, want) && strstr(text, "(error 10048)"), "log: %s", text);
    close(holder);
    uninstall();
}

Test(wine_service, service_flag_outside_the_scm_is_refused)
{
    sup_proc proc;
    char *args[] = {"--service", "--host", "127.0.0.1", "--port", "0", NULL};
    int code = run_echo(&proc, args);
    cr_assert(code == 1, "overlap-echo.exe --service from a console: %s", sup_proc_describe(&proc));
    cr_assert(strstr(proc.err, "overlap-echo: --service: StartServiceCtrlDispatcher: ") &&
                  strstr(proc.err, "(error 1063)") && strstr(proc.err, "sc start overlap-echo"),
              "stderr: %s", proc.err);
    sup_proc_free(&proc);
}

Test(wine_service, uninstall_without_the_service_names_1060)
{
    sup_proc proc;
    char *args[] = {"uninstall", NULL};
    int code = run_echo(&proc, args);
    cr_assert(code == 1, "uninstall with nothing installed: %s", sup_proc_describe(&proc));
    cr_assert(strstr(proc.err, "overlap-echo: uninstall: OpenService overlap-echo: ") &&
                  strstr(proc.err, "(error 1060)"),
              "stderr: %s", proc.err);
    sup_proc_free(&proc);
}

Test(wine_service, checkpoint_holds_while_the_drain_makes_no_progress)
{
    /* A connection whose peer stays silent: the drain waits for it until --drain-timeout. Meanwhile nothing moves,
     * so the checkpoint must not advance (the wait hint covers the drain); advancing it anyway would hide a stop
     * that hangs. Over four seconds it may change once: the server's own STOP_PENDING after the handler's. */
    char log[LOG_PATH_SIZE], windows_log[LOG_PATH_SIZE + 2];
    log_paths("checkpoint.log", log, windows_log);
    sup_proc proc;
    char *args[] = {"install", "--start", "demand", "--host", "127.0.0.1", "--port", "0", "--threads", "1",
                    "--drain-timeout", "12", "--log-file", windows_log, NULL};
    int code = run_echo(&proc, args);
    cr_assert(code == 0, "install: exit %d: %s%s", code, proc.out, proc.err);
    sup_proc_free(&proc);
    start_service();
    int port = wait_for_listening(log);
    struct service_state state;
    wait_for_state(STATE_RUNNING, &state);
    int fd = sup_connect("127.0.0.1", port, IO_TIMEOUT_MS);
    cr_assert(fd >= 0, "connect: %s", strerror(-fd));
    expect_echo(fd, 43, 1000);

    sup_proc stop;
    cr_assert(run_sc(&stop, "stop") == 0, "sc stop: %s%s", stop.out, stop.err);
    sup_proc_free(&stop);
    query_state(&state);
    cr_assert(state.state == STATE_STOP_PENDING, "after sc stop, with a silent peer: %s", state.text);
    /* 12 s of drain + 5 s. */
    cr_assert(state.wait_hint == 17000, "wait hint: %s", state.text);
    unsigned long first = state.checkpoint;
    int64_t until = sup_now_ms() + 4000;
    while (sup_now_ms() < until) {
        sup_sleep_ms(500);
        query_state(&state);
        cr_assert(state.state == STATE_STOP_PENDING, "the drain of a silent peer ended early: %s", state.text);
    }
    cr_assert(state.checkpoint <= first + 1, "the checkpoint advanced from %lu to %lu with no progress: %s", first,
              state.checkpoint, state.text);

    /* The drain deadline closes the connection; the service then stops cleanly. */
    unsigned char rest[16];
    size_t got = 0;
    sup_recv_to_eof(fd, rest, sizeof rest, &got);
    close(fd);
    wait_for_state(STATE_STOPPED, &state);
    cr_assert(state.win32_exit == 0 && state.service_exit == 0, "exit codes: %s", state.text);
    uninstall();
}

/* Two instances, each installed under its own --name: both run, each on its own port, and stopping one leaves the
 * other serving. */
Test(wine_service, two_named_instances_run_and_stop_side_by_side)
{
    static const char *const names[] = {"overlap-echo-a", "overlap-echo-b"};
    char logs[2][LOG_PATH_SIZE], windows_logs[2][LOG_PATH_SIZE + 2];
    int ports[2];
    for (int i = 0; i < 2; i++) {
        char file[32];
        snprintf(file, sizeof file, "%s.log", names[i]);
        log_paths(file, logs[i], windows_logs[i]);
        sup_proc proc;
        char *args[] = {"install", "--name", (char *)names[i], "--start", "demand", "--host", "127.0.0.1",
                        "--port", "0", "--threads", "1", "--log-file", windows_logs[i], NULL};
        int code = run_echo(&proc, args);
        cr_assert(code == 0, "install --name %s: exit %d: %s%s", names[i], code, proc.out, proc.err);
        char want[128];
        snprintf(want, sizeof want, "overlap-echo: installed service %s (start on demand, account NT SERVICE\\%s,",
                 names[i], names[i]);
        cr_assert(strstr(proc.out, want), "%s", proc.out);
        expect_only_known_warnings(proc.err);
        sup_proc_free(&proc);
    }
    sup_proc reg;
    char *reg_argv[] = {wine_path(), "reg", "query", "HKLM\\System\\CurrentControlSet\\Services\\overlap-echo-b",
                        NULL};
    cr_assert(run(&reg, reg_argv) == 0, "reg query: %s%s", reg.out, reg.err);
    cr_assert(strstr(reg.out, "DisplayName    REG_SZ    overlap-echo TCP echo server (overlap-echo-b)") &&
                  strstr(reg.out, "ObjectName    REG_SZ    NT SERVICE\\overlap-echo-b") &&
                  !strstr(reg.out, "--name"),
              "registry: %s", reg.out);
    sup_proc_free(&reg);

    struct service_state state;
    for (int i = 0; i < 2; i++) {
        sup_proc proc;
        cr_assert(run_sc_named(&proc, "start", names[i]) == 0, "sc start %s: %s%s", names[i], proc.out, proc.err);
        sup_proc_free(&proc);
        ports[i] = wait_for_listening(logs[i]);
        wait_for_named_state(names[i], STATE_RUNNING, &state);
    }
    cr_assert(ports[0] != ports[1]);
    for (int i = 0; i < 2; i++) {
        int fd = sup_connect("127.0.0.1", ports[i], IO_TIMEOUT_MS);
        cr_assert(fd >= 0, "connect to %s: %s", names[i], strerror(-fd));
        expect_echo(fd, 50 + (uint32_t)i, 3000);
        close(fd);
    }

    sup_proc stop;
    cr_assert(run_sc_named(&stop, "stop", names[0]) == 0, "sc stop: %s%s", stop.out, stop.err);
    sup_proc_free(&stop);
    wait_for_named_state(names[0], STATE_STOPPED, &state);
    cr_assert(state.win32_exit == 0 && state.service_exit == 0, "%s: %s", names[0], state.text);
    query_named(names[1], &state);
    cr_assert(state.state == STATE_RUNNING, "stopping %s stopped %s too: %s", names[0], names[1], state.text);
    int fd = sup_connect("127.0.0.1", ports[1], IO_TIMEOUT_MS);
    cr_assert(fd >= 0, "connect to %s after the other stopped: %s", names[1], strerror(-fd));
    expect_echo(fd, 52, 3000);
    close(fd);

    /* uninstall --name: the running one is drained and removed, the stopped one removed. */
    for (int i = 1; i >= 0; i--) {
        sup_proc proc;
        char *args[] = {"uninstall", "--name", (char *)names[i], NULL};
        int code = run_echo(&proc, args);
        cr_assert(code == 0, "uninstall --name %s: exit %d: %s%s", names[i], code, proc.out, proc.err);
        char want[96];
        snprintf(want, sizeof want, "overlap-echo: removed service %s", names[i]);
        cr_assert(strstr(proc.out, want), "%s", proc.out);
        sup_proc_free(&proc);
        query_named(names[i], &state);
        cr_assert(state.state == 0, "%s still known: %s", names[i], state.text);
    }
    for (int i = 0; i < 2; i++)
        cr_assert(strstr(read_log(logs[i]), "overlap-echo: stopped after"), "%s log: %s", names[i],
                  read_log(logs[i]));
}

Test(wine_service, install_start_delayed_is_set_or_refused)
{
    sup_proc proc;
    char *args[] = {"install", "--name", "overlap-echo-delayed", "--start", "delayed", "--port", "0", NULL};
    int code = run_echo(&proc, args);
    struct service_state state;
    if (code == 0) {
        /* Windows: an automatic start with the delayed flag. */
        cr_assert(strstr(proc.out, "(start delayed automatic,"), "%s", proc.out);
        sup_proc reg;
        char *reg_argv[] = {wine_path(), "reg", "query",
                            "HKLM\\System\\CurrentControlSet\\Services\\overlap-echo-delayed", NULL};
        cr_assert(run(&reg, reg_argv) == 0, "reg query: %s%s", reg.out, reg.err);
        cr_assert(strstr(reg.out, "Start    REG_DWORD    0x2") && strstr(reg.out, "DelayedAutostart    REG_DWORD    0x1"),
                  "registry: %s", reg.out);
        sup_proc_free(&reg);
        sup_proc_free(&proc);
        char *uninstall_args[] = {"uninstall", "--name", "overlap-echo-delayed", NULL};
        cr_assert(run_echo(&proc, uninstall_args) == 0, "uninstall: %s%s", proc.out, proc.err);
    } else {
        /* Wine 8.0 does not know the level: asked for by name, it is refused and nothing stays installed. */
        cr_assert(code == 1, "install --start delayed: %s", sup_proc_describe(&proc));
        cr_assert(strstr(proc.err, "overlap-echo: install: ChangeServiceConfig2 (delayed automatic start): ") &&
                      strstr(proc.err, "(error 124)"),
                  "stderr: %s", proc.err);
        cr_log_info("this SCM has no delayed automatic start: %s", proc.err);
    }
    sup_proc_free(&proc);
    query_named("overlap-echo-delayed", &state);
    cr_assert(state.state == 0, "still installed: %s", state.text);
}

/* The service's command line as Windows sees it: "Z:\\...\\overlap-echo.exe --service ARGS". */
static void windows_command(char *out, size_t size, const char *args)
{
    char path[600];
    snprintf(path, sizeof path, "Z:%s", echo_exe());
    for (char *c = path; *c; c++)
        if (*c == '/')
            *c = '\\';
    snprintf(out, size, "%s --service %s", path, args);
}

/* Started by the SCM, a process that fails before its dispatcher connects (bad option, --log-file that does not
 * open) still reaches SERVICE_STOPPED with its exit code: before, it vanished and the SCM saw a start that timed
 * out. (The Event Log entry it writes as well is not visible under Wine, whose ReportEvent stores nothing.) */
static void expect_failed_start(const char *what, int exit_code)
{
    sup_proc proc;
    run_sc(&proc, "start"); /* fails or starts: the state below is what counts */
    sup_proc_free(&proc);
    struct service_state state;
    wait_for_state(STATE_STOPPED, &state);
    cr_assert(state.win32_exit == 1066 && state.service_exit == (unsigned long)exit_code,
              "%s: want 1066 and exit code %d: %s", what, exit_code, state.text);
}

Test(wine_service, a_bad_option_under_the_scm_stops_with_exit_code_2)
{
    /* install refuses bad options, so the service is created with sc: as an edited ImagePath would be. */
    char command[1024];
    windows_command(command, sizeof command, "--port 70000");
    char *create_argv[] = {wine_path(), "sc", "create", "overlap-echo", "binpath=", command, "start=", "demand", NULL};
    sup_proc proc;
    int code = run(&proc, create_argv);
    cr_assert(code == 0, "sc create: exit %d: %s%s", code, proc.out, proc.err);
    sup_proc_free(&proc);
    expect_failed_start("--port 70000", 2);
    uninstall();
}

Test(wine_service, a_log_file_that_does_not_open_stops_with_exit_code_1)
{
    char log[LOG_PATH_SIZE], windows_log[LOG_PATH_SIZE + 2];
    log_paths("no-such-folder\\service.log", log, windows_log);
    install(windows_log, "0");
    expect_failed_start("--log-file in a missing folder", 1);
    uninstall();
}
