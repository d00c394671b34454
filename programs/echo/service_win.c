/*
 * service_win.c - overlap-echo under the Windows Service Control Manager.
 *
 * "overlap-echo --service": the main thread becomes the SCM dispatcher (StartServiceCtrlDispatcher) and the server
 * runs in the service's main function. Stop and shutdown controls do what Ctrl+C does in a console: the control
 * handler only records the control and signals an event the server's loop waits on, and the server drains as
 * usual. Meanwhile the SCM sees SERVICE_STOP_PENDING with a wait hint covering --drain-timeout and a checkpoint
 * that advances while the drain makes progress, then SERVICE_STOPPED with the exit code. At system shutdown the
 * service takes SERVICE_CONTROL_PRESHUTDOWN, with a preshutdown timeout (set by install) that covers the drain.
 *
 * "overlap-echo install [--name NAME] [--start auto|delayed|demand] [options]" and "overlap-echo uninstall
 * [--name NAME]" register and remove the service (one per name: several instances side by side, each under its
 * own virtual account NT SERVICE\NAME). Every failure prints the call, the Win32 code and its FormatMessage text.
 */
#include "service_win.h"

#include "echo_options.h"
#include "service_notify.h"

#define WIN32_LEAN_AND_MEAN
#include <windows.h>
#include <shellapi.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

#define SERVICE_DISPLAY_NAME L"overlap-echo TCP echo server"
#define SERVICE_DESCRIPTION_TEXT                                                                                   \
    L"Echoes every byte received on each TCP connection (liboverlap, IOCP). Stopping it finishes the open "         \
    L"connections first."
/* The service's virtual account, NT SERVICE\<name>: an identity of its own (the service SID), given rights one by
 * one like systemd's DynamicUser, where the shared LocalService would give every such service the same rights. */
#define SERVICE_ACCOUNT_PREFIX L"NT SERVICE\\"
/* The SCM gives up on a service that stays START_PENDING past the hint; starting is an engine and a bind. */
#define START_WAIT_HINT_MS 10000
/* Headroom over the drain for the summary, freeing the engine and exiting. */
#define STOP_MARGIN_MS 5000
#define CHECKPOINT_INTERVAL_MS 1000
/* overlap.h: drain_timeout_ms 0 means 5 s. */
#define DEFAULT_DRAIN_SECONDS 5.0
/* uninstall waits this long at most for a service that is still starting (it accepts no stop until it runs). */
#define START_WAIT_MAX_MS 30000
/* The test fault slow-service-start holds the service in START_PENDING this long (see slow_start_fault). */
#define SLOW_START_MS 8000

/* ---- errors ---- */

/* Win32 codes get their system text here. ovl_strerror is not used: it reads codes below 200 as C runtime errno
 * values, and ERROR_ACCESS_DENIED (5) or ERROR_INVALID_PARAMETER (87) would come out as the wrong text. */
static FILE *problem_stream; /* stderr, or the --log-file while running as the service */

static void print_win_error(const char *what, DWORD code)
{
    char text[256];
    DWORD length = FormatMessageA(FORMAT_MESSAGE_FROM_SYSTEM | FORMAT_MESSAGE_IGNORE_INSERTS, NULL, code,
                                  MAKELANGID(LANG_NEUTRAL, SUBLANG_DEFAULT), text, sizeof text, NULL);
    while (length > 0 && (text[length - 1] == '\n' || text[length - 1] == '\r' || text[length - 1] == '.'))
        text[--length] = '\0';
    if (length == 0)
        snprintf(text, sizeof text, "Windows error %lu", (unsigned long)code);
    fprintf(problem_stream ? problem_stream : stderr, "overlap-echo: %s: %s (error %lu)\n", what, text,
            (unsigned long)code);
    fflush(problem_stream ? problem_stream : stderr);
}

/* ---- the event log ---- */

/* The one message of echo_messages.mc: "%1", the line as given. */
#define ECHO_EVENT_LINE 1
#define EVENT_LOG_KEY L"SYSTEM\\CurrentControlSet\\Services\\EventLog\\Application\\"

/* The event source is the service's name (registered by install); service_main sets it from the SCM's argv[0]. */
static wchar_t event_source[257] = L"" ECHO_SERVICE_NAME_DEFAULT;

static void report_event(WORD type, const char *line)
{
    HANDLE source = RegisterEventSourceW(NULL, event_source);
    if (!source) {
        print_win_error("RegisterEventSource", GetLastError());
        return;
    }
    /* The lines come from the C runtime, in the ANSI code page (argv, strerror). */
    static wchar_t text[4096];
    if (!MultiByteToWideChar(CP_ACP, 0, line, -1, text, sizeof text / sizeof text[0]))
        swprintf(text, sizeof text / sizeof text[0], L"%hs", "overlap-echo: (the message did not convert)");
    LPCWSTR strings[] = {text};
    if (!ReportEventW(source, type, 0, ECHO_EVENT_LINE, NULL, 1, 0, strings, NULL))
        print_win_error("ReportEvent", GetLastError());
    DeregisterEventSource(source);
}

static double drain_seconds(const struct echo_options *options)
{
    uint32_t ms = options->engine.config.drain_timeout_ms;
    return ms > 0 ? ms / 1000.0 : DEFAULT_DRAIN_SECONDS;
}

/* ---- running as the service ---- */

/* The service's status has one writer at a time, so no lock guards it (a control handler must not wait on one:
 * the dispatcher thread that runs it serves every control): service_main writes START_PENDING; the server thread
 * RUNNING; the control handler the first STOP_PENDING, before it sets stop_event, which the server thread waits on;
 * the server thread then STOP_PENDING with the drain's hint and starts the checkpoint timer; the timer alone while
 * the drain runs; service_main STOPPED once the timer is deleted. A pending state accepts no control (the SCM sends
 * none then), so the handler reports at most once. */
static struct {
    SERVICE_STATUS_HANDLE handle; /* NULL unless running under the SCM: the notify calls then do nothing */
    SERVICE_STATUS status;
    HANDLE stop_event;
    volatile LONG stop_control;   /* the control that asked to stop, + 1 (0: none yet) */
    HANDLE checkpoint_timer;
    ovl_engine *draining;         /* read by the timer: the drain's progress */
    ovl_stats progress;           /* the counters at the last checkpoint */
    const struct echo_options *options;
    echo_serve_fn serve;
    int exit_code;
    const char *fail_reason;      /* service_win_fail: why the process cannot serve */
    SRWLOCK problems_lock;        /* problems is appended from any thread (the engine's log hook) */
    char problems[2048];          /* the problem lines printed before SERVICE_RUNNING */
    bool running;
} service = {.problems_lock = SRWLOCK_INIT};

void service_notify_problem(const char *line)
{
    AcquireSRWLockExclusive(&service.problems_lock);
    if (!service.running) {
        size_t used = strlen(service.problems);
        snprintf(service.problems + used, sizeof service.problems - used, "%s%s", used ? "\n" : "", line);
    }
    ReleaseSRWLockExclusive(&service.problems_lock);
}

/* Pending states advance the checkpoint on every report, which tells the SCM the service is making progress; the
 * final states reset it, as the SCM expects. */
static void report_status(DWORD state, DWORD wait_hint)
{
    service.status.dwCurrentState = state;
    service.status.dwWaitHint = wait_hint;
    bool pending = state == SERVICE_START_PENDING || state == SERVICE_STOP_PENDING;
    service.status.dwCheckPoint = pending ? service.status.dwCheckPoint + 1 : 0;
    /* A stop can only be carried out once the listeners are up (serve owns the engine from then on). PRESHUTDOWN:
     * at system shutdown the SCM waits for the preshutdown timeout install configured (covering --drain-timeout)
     * instead of the ~20 s SHUTDOWN allows; SHUTDOWN stays accepted for a system that sends no PRESHUTDOWN. */
    service.status.dwControlsAccepted =
        state == SERVICE_RUNNING ? SERVICE_ACCEPT_STOP | SERVICE_ACCEPT_PRESHUTDOWN | SERVICE_ACCEPT_SHUTDOWN : 0;
    if (!SetServiceStatus(service.handle, &service.status))
        print_win_error("SetServiceStatus", GetLastError());
}

static DWORD stop_wait_hint(double drain)
{
    return (DWORD)(drain * 1000.0) + STOP_MARGIN_MS;
}

/* The checkpoint advances only when the drain moves: a connection closed, bytes echoed or read. A drain that
 * waits for silent peers holds it still, which is fine: the wait hint covers the whole --drain-timeout. A stop
 * that hangs past it then shows as one (the SCM's wait hint runs out, uninstall gives up) instead of advancing
 * forever. */
static VOID CALLBACK advance_checkpoint(PVOID context, BOOLEAN timer_fired)
{
    (void)context;
    (void)timer_fired;
    ovl_stats now;
    ovl_engine_stats(service.draining, &now);
    if (now.conns_open == service.progress.conns_open && now.bytes_out == service.progress.bytes_out &&
        now.bytes_in == service.progress.bytes_in && now.bytes_discarded == service.progress.bytes_discarded)
        return;
    service.progress = now;
    report_status(SERVICE_STOP_PENDING, service.status.dwWaitHint);
}

void service_notify_ready(const char *status)
{
    (void)status;
    if (!service.handle)
        return;
    AcquireSRWLockExclusive(&service.problems_lock);
    service.running = true;
    ReleaseSRWLockExclusive(&service.problems_lock);
    report_status(SERVICE_RUNNING, 0);
}

void service_notify_status(const char *status)
{
    /* The SCM has no free-form status; the stats lines go to --log-file. */
    (void)status;
}

void service_notify_stopping(const char *status, double drain, ovl_engine *engine)
{
    (void)status;
    if (!service.handle)
        return;
    report_status(SERVICE_STOP_PENDING, stop_wait_hint(drain));
    /* The drain blocks the server thread in ovl_engine_stop; a pool timer reports its progress meanwhile. */
    service.draining = engine;
    ovl_engine_stats(engine, &service.progress);
    if (!CreateTimerQueueTimer(&service.checkpoint_timer, NULL, advance_checkpoint, NULL, CHECKPOINT_INTERVAL_MS,
                               CHECKPOINT_INTERVAL_MS, WT_EXECUTEDEFAULT)) {
        service.checkpoint_timer = NULL;
        print_win_error("CreateTimerQueueTimer", GetLastError());
    }
}

void service_notify_drained(void)
{
    /* INVALID_HANDLE_VALUE: wait for a running callback, so none reads the engine after this or reports
     * STOP_PENDING after STOPPED. */
    if (service.checkpoint_timer && !DeleteTimerQueueTimer(NULL, service.checkpoint_timer, INVALID_HANDLE_VALUE))
        print_win_error("DeleteTimerQueueTimer", GetLastError());
    service.checkpoint_timer = NULL;
    service.draining = NULL;
}

static DWORD WINAPI on_service_control(DWORD control, DWORD event_type, LPVOID event_data, LPVOID context)
{
    (void)event_type;
    (void)event_data;
    (void)context;
    switch (control) {
    case SERVICE_CONTROL_STOP:
    case SERVICE_CONTROL_PRESHUTDOWN:
    case SERVICE_CONTROL_SHUTDOWN:
        /* Only the first: after it the service is STOP_PENDING and accepts no control. */
        if (InterlockedCompareExchange(&service.stop_control, (LONG)control + 1, 0) == 0) {
            /* Answer at once (the SCM waits for this handler); the server confirms when its drain begins. */
            report_status(SERVICE_STOP_PENDING, stop_wait_hint(drain_seconds(service.options)));
            SetEvent(service.stop_event);
        }
        return NO_ERROR;
    case SERVICE_CONTROL_INTERROGATE:
        return NO_ERROR;
    default:
        return ERROR_CALL_NOT_IMPLEMENTED;
    }
}

static int service_stop_wait(double seconds)
{
    DWORD ms = seconds <= 0 ? 0 : seconds > 86400.0 ? 86400000u : (DWORD)(seconds * 1000.0);
    if (WaitForSingleObject(service.stop_event, ms) == WAIT_OBJECT_0)
        return (int)InterlockedCompareExchange(&service.stop_control, 0, 0);
    return 0;
}

static const char *service_stop_name(int which)
{
    switch (which - 1) {
    case SERVICE_CONTROL_STOP: return "service stop";
    case SERVICE_CONTROL_PRESHUTDOWN:
    case SERVICE_CONTROL_SHUTDOWN: return "system shutdown";
    default: return "stop requested";
    }
}

/* The SCM's stopped state for exit code `code`: a non-zero exit (bind failed, ...) is a service-specific error:
 * "sc query" shows 1066 and our code, and the failure actions install configured (restart) apply. */
static void report_stopped(int code)
{
    service.status.dwWin32ExitCode = code ? ERROR_SERVICE_SPECIFIC_ERROR : NO_ERROR;
    service.status.dwServiceSpecificExitCode = (DWORD)code;
    report_status(SERVICE_STOPPED, 0);
}

static bool register_handler(DWORD argc, LPWSTR *argv)
{
    if (argc > 0 && argv[0][0])
        swprintf(event_source, sizeof event_source / sizeof event_source[0], L"%ls", argv[0]);
    service.status.dwServiceType = SERVICE_WIN32_OWN_PROCESS;
    service.handle = RegisterServiceCtrlHandlerExW(event_source, on_service_control, NULL);
    if (!service.handle) {
        print_win_error("RegisterServiceCtrlHandlerEx", GetLastError());
        return false;
    }
    return true;
}

/* service_win_fail's service: connected only to say why it cannot run. */
static void WINAPI failed_service_main(DWORD argc, LPWSTR *argv)
{
    if (!register_handler(argc, argv))
        return;
    char line[1024];
    snprintf(line, sizeof line, "overlap-echo: the service %ls cannot start (exit code %d): %s", event_source,
             service.exit_code, service.fail_reason);
    report_event(EVENTLOG_ERROR_TYPE, line);
    report_stopped(service.exit_code);
}

int service_win_fail(int exit_code, const char *reason)
{
    service.exit_code = exit_code;
    service.fail_reason = reason;
    static wchar_t service_name[] = L"" ECHO_SERVICE_NAME_DEFAULT;
    SERVICE_TABLE_ENTRYW table[] = {{service_name, failed_service_main}, {NULL, NULL}};
    /* Not started by the SCM (1063): the reason is on stderr already, as for any console run. */
    StartServiceCtrlDispatcherW(table);
    return exit_code;
}

/* $OVERLAP_TEST_FAULTS=slow-service-start (matched whole in its comma-separated list, as the library's faults are):
 * the service stays START_PENDING for SLOW_START_MS, advancing its checkpoint every second as a slow but healthy
 * start does, so that the tests can act on a service that is still starting (uninstall). Test-only: it says so in
 * the log. */
static void slow_start_fault(void)
{
    const char *list = getenv("OVERLAP_TEST_FAULTS");
    static const char name[] = "slow-service-start";
    bool on = false;
    for (const char *at = list; at && *at;) {
        size_t length = strcspn(at, ",");
        if (length == sizeof name - 1 && !memcmp(at, name, length))
            on = true;
        at += length + (at[length] == ',');
    }
    if (!on)
        return;
    FILE *out = problem_stream ? problem_stream : stderr;
    fprintf(out, "overlap-echo: warning: OVERLAP_TEST_FAULTS=%s: a test fault is on (the service stays start "
                 "pending for %d s on purpose); unset it outside tests\n", list, SLOW_START_MS / 1000);
    fflush(out);
    for (int waited = 0; waited < SLOW_START_MS; waited += CHECKPOINT_INTERVAL_MS) {
        Sleep(CHECKPOINT_INTERVAL_MS);
        report_status(SERVICE_START_PENDING, START_WAIT_HINT_MS);
    }
}

static void WINAPI service_main(DWORD argc, LPWSTR *argv)
{
    /* The options come from the command line install registered; arguments given to "sc start" are not used. */
    if (!register_handler(argc, argv)) {
        service.exit_code = 1;
        return;
    }
    report_status(SERVICE_START_PENDING, START_WAIT_HINT_MS);
    slow_start_fault();

    int code = service.serve(service.options, service_stop_wait, service_stop_name);

    service_notify_drained(); /* in case serve ended without it */
    service.exit_code = code;
    if (code && !service.running) {
        /* What it printed went to --log-file, which an operator looks at only knowing there is a problem. */
        char line[sizeof service.problems + 256];
        AcquireSRWLockExclusive(&service.problems_lock);
        snprintf(line, sizeof line, "overlap-echo: the service %ls could not start (exit code %d)%s%s", event_source,
                 code, service.problems[0] ? ":\n" : "", service.problems);
        ReleaseSRWLockExclusive(&service.problems_lock);
        report_event(EVENTLOG_ERROR_TYPE, line);
    }
    report_stopped(code);
}

int service_win_run(const struct echo_options *options, echo_serve_fn serve, FILE *problems)
{
    /* SERVICE_WIN32_OWN_PROCESS: the SCM starts the table's one service whatever its name, and passes the
     * installed name to service_main (install --name). */
    static wchar_t service_name[] = L"" ECHO_SERVICE_NAME_DEFAULT;
    problem_stream = problems;
    service.options = options;
    service.serve = serve;
    service.exit_code = 1;
    service.stop_event = CreateEventW(NULL, TRUE, FALSE, NULL);
    if (!service.stop_event) {
        print_win_error("--service: CreateEvent", GetLastError());
        return 1;
    }
    SERVICE_TABLE_ENTRYW table[] = {{service_name, service_main}, {NULL, NULL}};
    if (!StartServiceCtrlDispatcherW(table)) {
        DWORD code = GetLastError();
        print_win_error("--service: StartServiceCtrlDispatcher", code);
        if (code == ERROR_FAILED_SERVICE_CONTROLLER_CONNECT) {
            fprintf(problems, "overlap-echo: --service is for the Service Control Manager: start the installed "
                              "service with 'sc start overlap-echo' (or its --name), or run overlap-echo without "
                              "--service\n");
            fflush(problems);
        }
        return 1;
    }
    return service.exit_code;
}

/* ---- install ---- */

/* The service's command line, as CreateService stores it (at most 32767 characters, like any command line). */
struct command_line {
    wchar_t text[32768];
    size_t length;
    bool overflow;
};

static void put_char(struct command_line *line, wchar_t c)
{
    if (line->length + 1 >= sizeof line->text / sizeof line->text[0]) {
        line->overflow = true;
        return;
    }
    line->text[line->length++] = c;
    line->text[line->length] = L'\0';
}

static void put_backslashes(struct command_line *line, size_t count)
{
    for (size_t i = 0; i < count; i++)
        put_char(line, L'\\');
}

/* Append one argument so that CommandLineToArgvW and the C runtime split it back out unchanged: quoted when it
 * has blanks or quotes, with backslashes doubled only where they precede a quote (the Windows rules). */
static void put_argument(struct command_line *line, const wchar_t *arg)
{
    if (line->length)
        put_char(line, L' ');
    if (*arg && !wcspbrk(arg, L" \t\n\v\"")) {
        for (; *arg; arg++)
            put_char(line, *arg);
        return;
    }
    put_char(line, L'"');
    for (const wchar_t *at = arg;; at++) {
        size_t backslashes = 0;
        while (*at == L'\\') {
            backslashes++;
            at++;
        }
        if (!*at) {
            put_backslashes(line, backslashes * 2); /* the closing quote follows */
            break;
        }
        if (*at == L'"') {
            put_backslashes(line, backslashes * 2 + 1);
        } else {
            put_backslashes(line, backslashes);
        }
        put_char(line, *at);
    }
    put_char(line, L'"');
}

/* "<this exe>" --service <the server options given to install, without --start and --name>. */
static int build_service_command(int argc, const struct echo_options *options, struct command_line *line)
{
    static wchar_t exe[32768];
    DWORD length = GetModuleFileNameW(NULL, exe, sizeof exe / sizeof exe[0]);
    if (length == 0 || length >= sizeof exe / sizeof exe[0]) {
        print_win_error("install: GetModuleFileName", length ? ERROR_INSUFFICIENT_BUFFER : GetLastError());
        return -1;
    }
    /* The options are taken in UTF-16 from the process command line, so a path in --log-file keeps characters
     * the ANSI code page of argv cannot hold. */
    int wide_count = 0;
    LPWSTR *wide = CommandLineToArgvW(GetCommandLineW(), &wide_count);
    if (!wide) {
        print_win_error("install: CommandLineToArgvW", GetLastError());
        return -1;
    }
    if (wide_count != argc) {
        fprintf(stderr, "overlap-echo: install: the command line splits into %d arguments for Windows and %d for "
                        "the C runtime; write the options without unusual quoting\n", wide_count, argc);
        LocalFree(wide);
        return -1;
    }
    memset(line, 0, sizeof *line);
    put_argument(line, exe);
    put_argument(line, L"--service");
    for (int i = options->first_server_arg; i < wide_count; i++) {
        /* --start and --name are for install itself (the service learns its name from the SCM); argument parsing
         * already checked that they have their values. */
        if (!wcscmp(wide[i], L"--start") || !wcscmp(wide[i], L"--name")) {
            i++;
            continue;
        }
        if (!wcsncmp(wide[i], L"--start=", 8) || !wcsncmp(wide[i], L"--name=", 7))
            continue;
        put_argument(line, wide[i]);
    }
    LocalFree(wide);
    if (line->overflow) {
        fprintf(stderr, "overlap-echo: install: the service command line would pass 32767 characters\n");
        return -1;
    }
    return 0;
}

/* A ChangeServiceConfig2 level this system does not know (ERROR_INVALID_LEVEL: Wine 8.0 for some) is worth a
 * warning, not a refused install: the service runs, without that setting. Returns 0 or -1. */
static int config_unsupported(const char *what, const char *consequence)
{
    DWORD code = GetLastError();
    char call[160];
    snprintf(call, sizeof call, "install: ChangeServiceConfig2 (%s)", what);
    print_win_error(call, code);
    if (code != ERROR_INVALID_LEVEL)
        return -1;
    fprintf(stderr, "overlap-echo: install: warning: %s\n", consequence);
    return 0;
}

/* Description, and restart on failure (the counterpart of systemd's Restart=on-failure): after 1 s, 5 s, then
 * 30 s, counting failures over a day. The flag makes a non-zero exit code a failure too, not only a crash. The
 * preshutdown timeout gives the drain its time at system shutdown (the default is 10 s on Windows 10 1703 and
 * later, and SHUTDOWN alone gets about 20 s). */
static int configure_service(SC_HANDLE handle, const struct echo_options *options)
{
    SERVICE_DESCRIPTIONW description = {.lpDescription = (LPWSTR)SERVICE_DESCRIPTION_TEXT};
    if (!ChangeServiceConfig2W(handle, SERVICE_CONFIG_DESCRIPTION, &description)) {
        print_win_error("install: ChangeServiceConfig2 (description)", GetLastError());
        return -1;
    }
    SC_ACTION restarts[] = {{SC_ACTION_RESTART, 1000}, {SC_ACTION_RESTART, 5000}, {SC_ACTION_RESTART, 30000}};
    SERVICE_FAILURE_ACTIONSW failure_actions = {.dwResetPeriod = 86400, .cActions = 3, .lpsaActions = restarts};
    if (!ChangeServiceConfig2W(handle, SERVICE_CONFIG_FAILURE_ACTIONS, &failure_actions)) {
        print_win_error("install: ChangeServiceConfig2 (failure actions: restart)", GetLastError());
        return -1;
    }
    SERVICE_FAILURE_ACTIONS_FLAG on_exit_code = {.fFailureActionsOnNonCrashFailures = TRUE};
    if (!ChangeServiceConfig2W(handle, SERVICE_CONFIG_FAILURE_ACTIONS_FLAG, &on_exit_code) &&
        config_unsupported("failure actions on a non-zero exit code",
                           "this system restarts the service only when it crashes, not when it exits with an "
                           "error") < 0)
        return -1;
    /* The service SID (NT SERVICE\<name>) in the process token, so that rights given to it (the --log-file
     * folder) hold for this service alone. A virtual account implies it; set it so the token says it too. */
    SERVICE_SID_INFO sid = {.dwServiceSidType = SERVICE_SID_TYPE_UNRESTRICTED};
    if (!ChangeServiceConfig2W(handle, SERVICE_CONFIG_SERVICE_SID_INFO, &sid) &&
        config_unsupported("service SID", "the service runs without its own SID in its token") < 0)
        return -1;
    if (options->start == ECHO_START_DELAYED) {
        SERVICE_DELAYED_AUTO_START_INFO delayed = {.fDelayedAutostart = TRUE};
        /* Asked for by name: a plain automatic start instead would be a surprise, so no fallback. */
        if (!ChangeServiceConfig2W(handle, SERVICE_CONFIG_DELAYED_AUTO_START_INFO, &delayed)) {
            print_win_error("install: ChangeServiceConfig2 (delayed automatic start)", GetLastError());
            return -1;
        }
    }
    SERVICE_PRESHUTDOWN_INFO preshutdown = {.dwPreshutdownTimeout = stop_wait_hint(drain_seconds(options))};
    if (!ChangeServiceConfig2W(handle, SERVICE_CONFIG_PRESHUTDOWN_INFO, &preshutdown) &&
        config_unsupported("preshutdown timeout", "at system shutdown the drain has the system's default time") < 0)
        return -1;
    return 0;
}

/* The names install and uninstall work with, in UTF-16. The name is ASCII (echo_options checks it). */
struct service_names {
    wchar_t name[ECHO_SERVICE_NAME_MAX + 1];
    wchar_t display[ECHO_SERVICE_NAME_MAX + 64];
    wchar_t account[ECHO_SERVICE_NAME_MAX + 16];
};

static void make_names(const char *name, struct service_names *names)
{
    size_t i = 0;
    for (; name[i] && i < ECHO_SERVICE_NAME_MAX; i++)
        names->name[i] = (wchar_t)(unsigned char)name[i];
    names->name[i] = L'\0';
    if (!strcmp(name, ECHO_SERVICE_NAME_DEFAULT))
        swprintf(names->display, sizeof names->display / sizeof names->display[0], L"%ls", SERVICE_DISPLAY_NAME);
    else
        swprintf(names->display, sizeof names->display / sizeof names->display[0], L"%ls (%ls)",
                 SERVICE_DISPLAY_NAME, names->name);
    swprintf(names->account, sizeof names->account / sizeof names->account[0], L"%ls%ls", SERVICE_ACCOUNT_PREFIX,
             names->name);
}

/* Whether the event source key `key` names an overlap-echo executable as its message file: ours to replace or
 * remove, from this install or an earlier one (the executable may have moved). Event sources and services have
 * separate names, so another program's source may carry the name asked for. */
static bool event_source_is_ours(HKEY key)
{
    wchar_t file[32768];
    DWORD size = sizeof file - sizeof file[0], type = 0;
    if (RegQueryValueExW(key, L"EventMessageFile", NULL, &type, (BYTE *)file, &size) != ERROR_SUCCESS ||
        (type != REG_SZ && type != REG_EXPAND_SZ))
        return false;
    file[size / sizeof file[0]] = L'\0';
    static const wchar_t tail[] = L"overlap-echo.exe";
    size_t length = wcslen(file), tail_length = wcslen(tail);
    return length >= tail_length && _wcsicmp(file + length - tail_length, tail) == 0;
}

/* EventLog\Application\<name>: the event source the service reports start-up failures to, with this executable's
 * message table (echo_messages.mc) to show them. Returns 0; -1 when it failed; -2 when another program owns a
 * source of that name (left as it is, and not to be removed by the undo). */
static int register_event_source(const struct service_names *names)
{
    wchar_t key_path[128 + ECHO_SERVICE_NAME_MAX];
    swprintf(key_path, sizeof key_path / sizeof key_path[0], L"%ls%ls", EVENT_LOG_KEY, names->name);
    static wchar_t exe[32768];
    DWORD length = GetModuleFileNameW(NULL, exe, sizeof exe / sizeof exe[0]);
    if (length == 0 || length >= sizeof exe / sizeof exe[0]) {
        print_win_error("install: GetModuleFileName", length ? ERROR_INSUFFICIENT_BUFFER : GetLastError());
        return -1;
    }
    HKEY key;
    DWORD disposition = 0;
    LONG rc = RegCreateKeyExW(HKEY_LOCAL_MACHINE, key_path, 0, NULL, REG_OPTION_NON_VOLATILE,
                              KEY_SET_VALUE | KEY_QUERY_VALUE, NULL, &key, &disposition);
    if (rc != ERROR_SUCCESS) {
        print_win_error("install: RegCreateKeyEx (event log source)", (DWORD)rc);
        return -1;
    }
    if (disposition == REG_OPENED_EXISTING_KEY && !event_source_is_ours(key)) {
        RegCloseKey(key);
        fprintf(stderr, "overlap-echo: install: another program has an event log source named %ls; choose another "
                        "--name\n", names->name);
        return -2;
    }
    DWORD types = EVENTLOG_ERROR_TYPE | EVENTLOG_WARNING_TYPE | EVENTLOG_INFORMATION_TYPE;
    rc = RegSetValueExW(key, L"EventMessageFile", 0, REG_EXPAND_SZ, (const BYTE *)exe,
                        (DWORD)((length + 1) * sizeof exe[0]));
    if (rc == ERROR_SUCCESS)
        rc = RegSetValueExW(key, L"TypesSupported", 0, REG_DWORD, (const BYTE *)&types, sizeof types);
    RegCloseKey(key);
    if (rc != ERROR_SUCCESS) {
        print_win_error("install: RegSetValueEx (event log source)", (DWORD)rc);
        return -1;
    }
    return 0;
}

/* Returns 0 (also when there was none: an install by an older version), or -1. */
static int remove_event_source(const struct service_names *names, const char *command)
{
    wchar_t key_path[128 + ECHO_SERVICE_NAME_MAX];
    swprintf(key_path, sizeof key_path / sizeof key_path[0], L"%ls%ls", EVENT_LOG_KEY, names->name);
    HKEY key;
    LONG rc = RegOpenKeyExW(HKEY_LOCAL_MACHINE, key_path, 0, KEY_QUERY_VALUE, &key);
    if (rc == ERROR_FILE_NOT_FOUND)
        return 0;
    if (rc == ERROR_SUCCESS) {
        bool ours = event_source_is_ours(key);
        RegCloseKey(key);
        if (!ours)
            return 0; /* another program's source of the same name: not ours to remove */
    }
    rc = RegDeleteKeyW(HKEY_LOCAL_MACHINE, key_path);
    if (rc != ERROR_SUCCESS && rc != ERROR_FILE_NOT_FOUND) {
        char what[64];
        snprintf(what, sizeof what, "%s: RegDeleteKey (event log source)", command);
        print_win_error(what, (DWORD)rc);
        return -1;
    }
    return 0;
}

int service_win_install(int argc, char **argv, const struct echo_options *options)
{
    (void)argv;
    static struct command_line line;
    if (build_service_command(argc, options, &line) < 0)
        return 1;
    const char *name = options->service_name;
    struct service_names names;
    make_names(name, &names);
    SC_HANDLE manager = OpenSCManagerW(NULL, NULL, SC_MANAGER_CONNECT | SC_MANAGER_CREATE_SERVICE);
    if (!manager) {
        DWORD code = GetLastError();
        print_win_error("install: OpenSCManager", code);
        if (code == ERROR_ACCESS_DENIED)
            fprintf(stderr, "overlap-echo: install needs an administrator: run it from an elevated prompt\n");
        return 1;
    }
    DWORD start_type = options->start == ECHO_START_DEMAND ? SERVICE_DEMAND_START : SERVICE_AUTO_START;
    /* SERVICE_START: restart failure actions may only be set through a handle that can start the service. A
     * virtual account has no password: NULL, as CreateService asks for one. */
    SC_HANDLE handle = CreateServiceW(manager, names.name, names.display, SERVICE_CHANGE_CONFIG | SERVICE_START | DELETE,
                                      SERVICE_WIN32_OWN_PROCESS, start_type, SERVICE_ERROR_NORMAL, line.text, NULL,
                                      NULL, NULL, names.account, NULL);
    if (!handle) {
        DWORD code = GetLastError();
        char what[128];
        snprintf(what, sizeof what, "install: CreateService %s", name);
        print_win_error(what, code);
        if (code == ERROR_SERVICE_EXISTS)
            fprintf(stderr, "overlap-echo: to change its options: overlap-echo uninstall%s%s, then install again; "
                            "for another instance: install --name ANOTHER\n",
                    strcmp(name, ECHO_SERVICE_NAME_DEFAULT) ? " --name " : "",
                    strcmp(name, ECHO_SERVICE_NAME_DEFAULT) ? name : "");
        CloseServiceHandle(manager);
        return 1;
    }
    int source = configure_service(handle, options) < 0 ? -1 : register_event_source(&names);
    if (source < 0) {
        /* Half a configuration is worse than none: take the service out again (and the event source, when it is
         * ours: remove_event_source leaves another program's). */
        remove_event_source(&names, "install");
        if (!DeleteService(handle))
            print_win_error("install: DeleteService (undoing the install)", GetLastError());
        CloseServiceHandle(handle);
        CloseServiceHandle(manager);
        return 1;
    }
    CloseServiceHandle(handle);
    CloseServiceHandle(manager);
    static const char *const starts[] = {"automatic", "delayed automatic", "on demand"};
    printf("overlap-echo: installed service %s (start %s, account %ls, restart on failure, event log source)\n",
           name,
           starts[options->start], names.account);
    printf("overlap-echo: command: %ls\n", line.text);
    printf("overlap-echo: start it with: sc start %s\n", name);
    return 0;
}

/* ---- uninstall ---- */

static const char *state_name(DWORD state)
{
    switch (state) {
    case SERVICE_STOPPED: return "stopped";
    case SERVICE_START_PENDING: return "start pending";
    case SERVICE_STOP_PENDING: return "stop pending";
    case SERVICE_RUNNING: return "running";
    case SERVICE_CONTINUE_PENDING: return "continue pending";
    case SERVICE_PAUSE_PENDING: return "pause pending";
    case SERVICE_PAUSED: return "paused";
    default: return "unknown state";
    }
}

static int query_status(SC_HANDLE handle, SERVICE_STATUS_PROCESS *status)
{
    DWORD needed = 0;
    if (!QueryServiceStatusEx(handle, SC_STATUS_PROCESS_INFO, (BYTE *)status, sizeof *status, &needed)) {
        print_win_error("uninstall: QueryServiceStatusEx", GetLastError());
        return -1;
    }
    return 0;
}

static bool not_stopped(DWORD state)
{
    return state != SERVICE_STOPPED;
}

static bool start_pending(DWORD state)
{
    return state == SERVICE_START_PENDING;
}

enum { WAIT_LEFT, WAIT_NO_PROGRESS, WAIT_TOO_LONG };

/* Poll the status while `waiting(state)` holds, judged the way the SCM judges progress: a stop or a start may take
 * as long as it likes while its checkpoint advances, but not longer than its wait hint + STOP_MARGIN_MS without
 * progress, and not past max_ms in all. Returns WAIT_LEFT, WAIT_NO_PROGRESS or WAIT_TOO_LONG, or -1 if a query
 * failed; `status` holds the last state seen. */
static int wait_with_progress(SC_HANDLE handle, SERVICE_STATUS_PROCESS *status, bool (*waiting)(DWORD state),
                              ULONGLONG max_ms)
{
    ULONGLONG start = GetTickCount64();
    DWORD checkpoint = status->dwCheckPoint;
    ULONGLONG progress_deadline = start + status->dwWaitHint + STOP_MARGIN_MS;
    while (waiting(status->dwCurrentState)) {
        ULONGLONG now = GetTickCount64();
        if (now > progress_deadline)
            return WAIT_NO_PROGRESS;
        if (now - start >= max_ms)
            return WAIT_TOO_LONG;
        Sleep(250);
        if (query_status(handle, status) < 0)
            return -1;
        if (status->dwCheckPoint != checkpoint) {
            checkpoint = status->dwCheckPoint;
            progress_deadline = GetTickCount64() + status->dwWaitHint + STOP_MARGIN_MS;
        }
    }
    return WAIT_LEFT;
}

/* Wait for SERVICE_STOPPED. The service advances its checkpoint only while its drain makes progress: a stop with
 * none hangs, and waiting longer would wait for ever. */
static int wait_until_stopped(SC_HANDLE handle, SERVICE_STATUS_PROCESS *status, const char *name)
{
    int rc = wait_with_progress(handle, status, not_stopped, ~0ull);
    if (rc == WAIT_NO_PROGRESS)
        fprintf(stderr, "overlap-echo: uninstall: the service %s is still %s with no progress for %lu ms (its "
                        "wait hint + %d ms); giving up, not removing it: end its process (sc queryex %s shows "
                        "the PID), then run uninstall again\n",
                name, state_name(status->dwCurrentState), (unsigned long)status->dwWaitHint + STOP_MARGIN_MS,
                STOP_MARGIN_MS, name);
    return rc == WAIT_LEFT ? 0 : -1;
}

/* A service still starting accepts no control (ControlService fails with ERROR_SERVICE_CANNOT_ACCEPT_CTRL, 1061;
 * Wine 8.0 says ERROR_INVALID_SERVICE_CONTROL, 1052): wait for it to leave START_PENDING, judged as the SCM judges a
 * start, and for START_WAIT_MAX_MS at most. Returns -1 if a query failed; `status` then holds the state it reached. */
static int wait_while_starting(SC_HANDLE handle, SERVICE_STATUS_PROCESS *status)
{
    return wait_with_progress(handle, status, start_pending, START_WAIT_MAX_MS) < 0 ? -1 : 0;
}

int service_win_uninstall(const char *name)
{
    struct service_names names;
    make_names(name, &names);
    SC_HANDLE manager = OpenSCManagerW(NULL, NULL, SC_MANAGER_CONNECT);
    if (!manager) {
        DWORD code = GetLastError();
        print_win_error("uninstall: OpenSCManager", code);
        if (code == ERROR_ACCESS_DENIED)
            fprintf(stderr, "overlap-echo: uninstall needs an administrator: run it from an elevated prompt\n");
        return 1;
    }
    SC_HANDLE handle = OpenServiceW(manager, names.name, SERVICE_STOP | SERVICE_QUERY_STATUS | DELETE);
    if (!handle) {
        char what[128];
        snprintf(what, sizeof what, "uninstall: OpenService %s", name);
        print_win_error(what, GetLastError());
        CloseServiceHandle(manager);
        return 1;
    }
    int rc = 1;
    SERVICE_STATUS_PROCESS status;
    if (query_status(handle, &status) < 0)
        goto done;
    bool marked = false;
    ULONGLONG waited_from = GetTickCount64();
    if (status.dwCurrentState == SERVICE_START_PENDING) {
        printf("overlap-echo: the service %s is still starting; waiting for its start to end (at most %d s)\n",
               name, START_WAIT_MAX_MS / 1000);
        fflush(stdout);
        if (wait_while_starting(handle, &status) < 0)
            goto done;
        /* Still starting: nothing can stop it now. DeleteService marks it for deletion, and the SCM removes it
         * once it stops; until then install of the same name fails (1072). */
        marked = status.dwCurrentState == SERVICE_START_PENDING;
    }
    if (marked) {
        /* below */
    } else if (status.dwCurrentState != SERVICE_STOPPED) {
        printf("overlap-echo: stopping service %s (%s; it finishes its open connections first)\n", name,
               state_name(status.dwCurrentState));
        SERVICE_STATUS control_status;
        if (status.dwCurrentState != SERVICE_STOP_PENDING &&
            !ControlService(handle, SERVICE_CONTROL_STOP, &control_status)) {
            DWORD code = GetLastError();
            if (code != ERROR_SERVICE_NOT_ACTIVE) {
                print_win_error("uninstall: ControlService (stop)", code);
                goto done;
            }
        }
        if (query_status(handle, &status) < 0 || wait_until_stopped(handle, &status, name) < 0)
            goto done;
        printf("overlap-echo: service stopped (exit code %lu, service exit code %lu)\n",
               (unsigned long)status.dwWin32ExitCode, (unsigned long)status.dwServiceSpecificExitCode);
    }
    if (!DeleteService(handle)) {
        char what[128];
        snprintf(what, sizeof what, "uninstall: DeleteService %s", name);
        print_win_error(what, GetLastError());
        goto done;
    }
    if (marked) {
        /* Not removed yet, so the exit code says so; its event source goes now, since no later uninstall will
         * find the service to remove it (its start's last lines then show in the Event Log without the message
         * file's formatting). */
        remove_event_source(&names, "uninstall");
        fprintf(stderr, "overlap-echo: uninstall: the service %s is still start pending after %llu s and cannot be "
                        "stopped yet: it is marked for deletion, and Windows removes it once it stops (sc queryex "
                        "%s shows its PID, to end it); until then a new install of that name fails\n",
                name, (unsigned long long)((GetTickCount64() - waited_from) / 1000), name);
        goto done;
    }
    printf("overlap-echo: removed service %s\n", name);
    rc = remove_event_source(&names, "uninstall") < 0 ? 1 : 0;
done:
    CloseServiceHandle(handle);
    CloseServiceHandle(manager);
    return rc;
}
