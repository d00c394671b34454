/*
 * support.c - test helpers: client sockets, byte patterns and captured child processes (see support.h).
 */
#include "support.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- sockets ---- */

static int make_addr(const char *host, int port, struct sockaddr_storage *ss, socklen_t *len)
{
    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons((uint16_t)port);
        *len = sizeof(*in4);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        *len = sizeof(*in6);
        return 0;
    }
    return -EINVAL;
}

int sup_set_timeouts(int fd, int timeout_ms)
{
    struct timeval tv = { .tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000 };
    if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) != 0)
        return -errno;
    if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) != 0)
        return -errno;
    return 0;
}

int sup_connect(const char *host, int port, int timeout_ms)
{
    return sup_connect_rcvbuf(host, port, 0, timeout_ms);
}

int sup_connect_rcvbuf(const char *host, int port, int rcvbuf, int timeout_ms)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int rc = make_addr(host, port, &ss, &len);
    if (rc < 0)
        return rc;
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    /* Before connect(): the window scale the connection offers follows from it. */
    if (rcvbuf > 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    /* SO_SNDTIMEO also bounds a blocking connect(). */
    rc = sup_set_timeouts(fd, timeout_ms);
    if (rc == 0 && connect(fd, (struct sockaddr *)&ss, len) != 0)
        rc = -errno;
    if (rc < 0) {
        close(fd);
        return rc;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

int sup_tcp_bind(const char *host, int port, bool listen_too, int *port_out)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int rc = make_addr(host, port, &ss, &len);
    if (rc < 0)
        return rc;
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (ss.ss_family == AF_INET6) {
        int one = 1;
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    }
    if (bind(fd, (struct sockaddr *)&ss, len) != 0 || (listen_too && listen(fd, 16) != 0)) {
        rc = -errno;
        close(fd);
        return rc;
    }
    if (port_out) {
        len = sizeof(ss);
        if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0) {
            rc = -errno;
            close(fd);
            return rc;
        }
        *port_out = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                             : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    }
    return fd;
}

int sup_ipv6_loopback(void)
{
    int port = 0;
    int listener = sup_tcp_bind("::1", 0, true, &port);
    if (listener < 0)
        return listener;
    int fd = sup_connect("::1", port, 2000);
    close(listener);
    if (fd < 0)
        return fd;
    close(fd);
    return 0;
}

int sup_send_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno == EWOULDBLOCK ? -EAGAIN : -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

ssize_t sup_recv_exact(int fd, void *buf, size_t len, size_t *got)
{
    char *p = buf;
    size_t have = 0;
    ssize_t result = 0;
    while (have < len) {
        ssize_t n = recv(fd, p + have, len - have, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            result = errno == EWOULDBLOCK ? -EAGAIN : -errno;
            break;
        }
        if (n == 0)
            break;
        have += (size_t)n;
    }
    if (got)
        *got = have;
    return result < 0 ? result : (ssize_t)have;
}

ssize_t sup_recv_to_eof(int fd, void *buf, size_t cap, size_t *got)
{
    char *p = buf;
    size_t have = 0;
    ssize_t result = 0;
    for (;;) {
        char extra;
        /* With the buffer full, read one byte more to tell "exactly cap bytes then EOF" from "too many". */
        ssize_t n = have < cap ? recv(fd, p + have, cap - have, 0) : recv(fd, &extra, 1, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            result = errno == EWOULDBLOCK ? -EAGAIN : -errno;
            break;
        }
        if (n == 0)
            break;
        if (have == cap) {
            result = -EMSGSIZE;
            break;
        }
        have += (size_t)n;
    }
    if (got)
        *got = have;
    return result < 0 ? result : (ssize_t)have;
}

int sup_exchange(int fd, uint32_t seed, uint64_t offset, size_t len)
{
    char *out = malloc(len), *in = malloc(len);
    if (!out || !in) {
        free(out);
        free(in);
        return -ENOMEM;
    }
    sup_pattern_fill(out, len, seed, offset);
    int rc = sup_send_all(fd, out, len);
    size_t got = 0;
    if (rc == 0) {
        ssize_t n = sup_recv_exact(fd, in, len, &got);
        if (n < 0)
            rc = (int)n;
        else if (got < len)
            rc = -ECONNABORTED;
        else if (sup_pattern_check(in, len, seed, offset) != len)
            rc = -EPROTO;
    }
    free(out);
    free(in);
    return rc;
}

int sup_wait_closed(int fd, int ms, int64_t *took_ms)
{
    int64_t t0 = sup_now_ms();
    struct pollfd p = { .fd = fd, .events = POLLIN };
    int ready;
    do
        ready = poll(&p, 1, ms);
    while (ready < 0 && errno == EINTR);
    if (took_ms)
        *took_ms = sup_now_ms() - t0;
    if (ready == 0)
        return -ETIMEDOUT;
    char byte;
    ssize_t n = recv(fd, &byte, 1, MSG_DONTWAIT);
    if (n == 0)
        return 0;
    if (n > 0)
        return -EPROTO;
    return -errno;
}

int sup_count_time_wait(int port)
{
    FILE *file = fopen("/proc/net/tcp", "r");
    if (!file)
        return -errno;
    char line[512];
    int count = 0;
    while (fgets(line, sizeof line, file)) {
        unsigned local_address, local_port, state;
        if (sscanf(line, " %*d: %8X:%4X %*8X:%*4X %2X", &local_address, &local_port, &state) == 3 &&
            local_port == (unsigned)port && state == 0x06)
            count++;
    }
    fclose(file);
    return count;
}

void sup_close_reset(int fd)
{
    struct linger lg = { .l_onoff = 1, .l_linger = 0 };
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(fd);
}

long sup_raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return -errno;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    return rl.rlim_cur == RLIM_INFINITY ? (long)1 << 30 : (long)rl.rlim_cur;
}

int64_t sup_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void sup_sleep_ms(int ms)
{
    struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* ---- pattern ---- */

static uint64_t mix64(uint64_t x)
{
    /* splitmix64's finaliser: every input bit changes about half the output bits. */
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

static uint64_t pattern_word(uint32_t seed, uint64_t word)
{
    return mix64(((uint64_t)seed << 40) ^ word ^ 0x9e3779b97f4a7c15ULL);
}

uint8_t sup_pattern_byte(uint32_t seed, uint64_t position)
{
    return (uint8_t)(pattern_word(seed, position >> 3) >> ((position & 7) * 8));
}

void sup_pattern_fill(void *buf, size_t len, uint32_t seed, uint64_t offset)
{
    uint8_t *p = buf;
    size_t i = 0;
    while (i < len) {
        uint64_t pos = offset + i;
        uint64_t w = pattern_word(seed, pos >> 3);
        for (unsigned b = (unsigned)(pos & 7); b < 8 && i < len; b++, i++)
            p[i] = (uint8_t)(w >> (b * 8));
    }
}

size_t sup_pattern_check(const void *buf, size_t len, uint32_t seed, uint64_t offset)
{
    const uint8_t *p = buf;
    size_t i = 0;
    while (i < len) {
        uint64_t pos = offset + i;
        uint64_t w = pattern_word(seed, pos >> 3);
        for (unsigned b = (unsigned)(pos & 7); b < 8 && i < len; b++, i++)
            if (p[i] != (uint8_t)(w >> (b * 8)))
                return i;
    }
    return len;
}

/* ---- child processes ---- */

/* PIDs started and not yet reaped, so that a test's fini can end them after a failed assertion abandoned the
 * sup_proc on the test's stack. */
static pid_t live_pids[64];

static void track(pid_t pid)
{
    for (size_t i = 0; i < sizeof(live_pids) / sizeof(live_pids[0]); i++)
        if (live_pids[i] == 0) {
            live_pids[i] = pid;
            return;
        }
}

static void untrack(pid_t pid)
{
    for (size_t i = 0; i < sizeof(live_pids) / sizeof(live_pids[0]); i++)
        if (live_pids[i] == pid)
            live_pids[i] = 0;
}

void sup_proc_kill_all(void)
{
    for (size_t i = 0; i < sizeof(live_pids) / sizeof(live_pids[0]); i++) {
        pid_t pid = live_pids[i];
        if (pid <= 0)
            continue;
        kill(pid, SIGKILL);
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
            ;
        live_pids[i] = 0;
    }
}

static void append(char **buf, size_t *len, size_t *cap, const char *data, size_t n)
{
    if (*len + n + 1 > *cap) {
        size_t want = *cap ? *cap : 4096;
        while (want < *len + n + 1)
            want *= 2;
        char *grown = realloc(*buf, want);
        if (!grown)
            abort();
        *buf = grown;
        *cap = want;
    }
    memcpy(*buf + *len, data, n);
    *len += n;
    (*buf)[*len] = '\0';
}

/* Read whatever the pipes hold, waiting at most timeout_ms for something to arrive. */
static void pump(sup_proc *proc, int timeout_ms)
{
    struct pollfd pfd[2];
    int n = 0;
    if (proc->out_fd >= 0)
        pfd[n++] = (struct pollfd){ .fd = proc->out_fd, .events = POLLIN };
    if (proc->err_fd >= 0)
        pfd[n++] = (struct pollfd){ .fd = proc->err_fd, .events = POLLIN };
    if (n == 0) {
        if (timeout_ms > 0)
            sup_sleep_ms(timeout_ms);
        return;
    }
    if (poll(pfd, (nfds_t)n, timeout_ms) <= 0)
        return;
    for (int i = 0; i < n; i++) {
        if (!(pfd[i].revents & (POLLIN | POLLHUP | POLLERR)))
            continue;
        char chunk[4096];
        ssize_t got = read(pfd[i].fd, chunk, sizeof(chunk));
        if (got < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        bool is_out = pfd[i].fd == proc->out_fd;
        if (got <= 0) {
            close(pfd[i].fd);
            if (is_out)
                proc->out_fd = -1;
            else
                proc->err_fd = -1;
            continue;
        }
        if (is_out)
            append(&proc->out, &proc->out_len, &proc->out_cap, chunk, (size_t)got);
        else
            append(&proc->err, &proc->err_len, &proc->err_cap, chunk, (size_t)got);
    }
}

int sup_proc_spawn(sup_proc *proc, char *const argv[])
{
    memset(proc, 0, sizeof(*proc));
    proc->out_fd = proc->err_fd = -1;
    /* Empty strings rather than NULL, so callers can strstr() the output of a child that printed nothing. */
    append(&proc->out, &proc->out_len, &proc->out_cap, "", 0);
    append(&proc->err, &proc->err_len, &proc->err_cap, "", 0);
    int out[2], err[2];
    if (pipe2(out, O_CLOEXEC) != 0)
        return -errno;
    if (pipe2(err, O_CLOEXEC) != 0) {
        int e = -errno;
        close(out[0]);
        close(out[1]);
        return e;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        int e = -errno;
        close(out[0]);
        close(out[1]);
        close(err[0]);
        close(err[1]);
        return e;
    }
    if (pid == 0) {
        /* Only async-signal-safe calls until exec: the test process may have threads. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        dup2(out[1], STDOUT_FILENO);
        dup2(err[1], STDERR_FILENO);
        signal(SIGPIPE, SIG_DFL);
        execv(argv[0], argv);
        static const char msg[] = "support: exec failed\n";
        ssize_t ignored = write(STDERR_FILENO, msg, sizeof(msg) - 1);
        (void)ignored;
        _exit(127);
    }
    close(out[1]);
    close(err[1]);
    track(pid);
    proc->pid = pid;
    proc->out_fd = out[0];
    proc->err_fd = err[0];
    return 0;
}

int sup_proc_read_line(sup_proc *proc, char *line, size_t cap, int timeout_ms)
{
    int64_t deadline = sup_now_ms() + timeout_ms;
    for (;;) {
        char *start = proc->out + proc->out_pos;
        char *nl = memchr(start, '\n', proc->out_len - proc->out_pos);
        if (nl) {
            size_t n = (size_t)(nl - start);
            if (cap > 0) {
                size_t copy = n < cap - 1 ? n : cap - 1;
                memcpy(line, start, copy);
                line[copy] = '\0';
            }
            proc->out_pos += n + 1;
            return 0;
        }
        if (proc->out_fd < 0)
            return -EPIPE;
        int64_t left = deadline - sup_now_ms();
        if (left <= 0)
            return -ETIMEDOUT;
        pump(proc, (int)(left < 50 ? left : 50));
    }
}

int sup_proc_listening_port(sup_proc *proc, char *line, size_t cap, int timeout_ms)
{
    char own[256];
    if (!line || cap == 0) {
        line = own;
        cap = sizeof own;
    }
    int64_t deadline = sup_now_ms() + timeout_ms;
    for (;;) {
        int64_t left = deadline - sup_now_ms();
        int rc = sup_proc_read_line(proc, line, cap, left > 0 ? (int)left : 0);
        if (rc < 0)
            return rc;
        if (strncmp(line, "listening on ", 13) != 0)
            continue;
        if (strlen(line) == cap - 1)
            return -EPROTO; /* cut short by cap: the port could be too */
        /* The port follows the last ':', which also holds for "[::1]:PORT"; a Windows program's line may end in
         * "\r". */
        const char *colon = strrchr(line, ':');
        char *end = NULL;
        long port = colon ? strtol(colon + 1, &end, 10) : 0;
        if (!colon || end == colon + 1 || (*end != '\0' && *end != '\r' && *end != ' ') || port <= 0 || port > 65535)
            return -EPROTO;
        return (int)port;
    }
}

int sup_proc_wait(sup_proc *proc, int timeout_ms)
{
    int64_t deadline = sup_now_ms() + timeout_ms;
    while (!proc->exited) {
        int status;
        pid_t r = waitpid(proc->pid, &status, WNOHANG);
        if (r == proc->pid) {
            untrack(proc->pid);
            proc->exited = true;
            proc->status = status;
            break;
        }
        if (r < 0 && errno != EINTR)
            return -errno;
        int64_t left = deadline - sup_now_ms();
        if (left <= 0)
            return -ETIMEDOUT;
        pump(proc, (int)(left < 20 ? left : 20));
    }
    /* The child is gone; collect what it left in the pipes (bounded, in case it passed them to a grandchild). */
    int64_t until = sup_now_ms() + 1000;
    while ((proc->out_fd >= 0 || proc->err_fd >= 0) && sup_now_ms() < until)
        pump(proc, 20);
    return 0;
}

int sup_proc_kill(sup_proc *proc, int sig)
{
    if (proc->pid <= 0 || proc->exited)
        return -ESRCH;
    return kill(proc->pid, sig) == 0 ? 0 : -errno;
}

void sup_proc_free(sup_proc *proc)
{
    if (proc->pid > 0 && !proc->exited) {
        kill(proc->pid, SIGKILL);
        int status;
        while (waitpid(proc->pid, &status, 0) < 0 && errno == EINTR)
            ;
        untrack(proc->pid);
        proc->exited = true;
        proc->status = status;
    }
    if (proc->out_fd >= 0)
        close(proc->out_fd);
    if (proc->err_fd >= 0)
        close(proc->err_fd);
    proc->out_fd = proc->err_fd = -1;
    free(proc->out);
    free(proc->err);
    proc->out = proc->err = NULL;
    proc->pid = 0;
}

int sup_proc_exit_code(const sup_proc *proc)
{
    if (!proc->exited || !WIFEXITED(proc->status))
        return -1;
    return WEXITSTATUS(proc->status);
}

const char *sup_proc_describe(const sup_proc *proc)
{
    static __thread char text[48];
    if (!proc->exited)
        snprintf(text, sizeof(text), "running");
    else if (WIFEXITED(proc->status))
        snprintf(text, sizeof(text), "exit %d", WEXITSTATUS(proc->status));
    else if (WIFSIGNALED(proc->status))
        snprintf(text, sizeof(text), "signal %d", WTERMSIG(proc->status));
    else
        snprintf(text, sizeof(text), "status 0x%x", (unsigned)proc->status);
    return text;
}

int sup_proc_run(sup_proc *proc, char *const argv[], int timeout_ms)
{
    int rc = sup_proc_spawn(proc, argv);
    if (rc < 0)
        return rc;
    return sup_proc_wait(proc, timeout_ms);
}

long sup_status_number(pid_t pid, const char *field)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -errno;
    long value = -ENOENT;
    size_t n = strlen(field);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, field, n) && line[n] == ':' && sscanf(line + n + 1, "%ld", &value) == 1)
            break;
    fclose(f);
    return value;
}

long sup_rss_kib(pid_t pid)
{
    return sup_status_number(pid, "VmRSS");
}

static bool comm_starts_with(pid_t pid, const char *name)
{
    char path[64], comm[64] = "";
    snprintf(path, sizeof path, "/proc/%d/comm", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    bool ok = fgets(comm, sizeof comm, f) != NULL;
    fclose(f);
    return ok && strncmp(comm, name, strlen(name)) == 0;
}

/* The parent's PID from /proc/PID/stat ("pid (comm) state ppid ..."; comm may hold spaces and parentheses, so
 * parse after the last ')'), or -1. */
static pid_t parent_of(pid_t pid)
{
    char path[64], stat[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(stat, 1, sizeof stat - 1, f);
    fclose(f);
    stat[n] = '\0';
    const char *close_paren = strrchr(stat, ')');
    int ppid = -1;
    if (!close_paren || sscanf(close_paren + 1, " %*c %d", &ppid) != 1)
        return -1;
    return (pid_t)ppid;
}

pid_t sup_find_process(pid_t root, const char *name)
{
    if (comm_starts_with(root, name))
        return root;
    DIR *dir = opendir("/proc");
    if (!dir)
        return -ESRCH;
    pid_t found = -ESRCH;
    struct dirent *entry;
    while (found < 0 && (entry = readdir(dir))) {
        pid_t pid = (pid_t)atoi(entry->d_name);
        if (pid <= 0 || !comm_starts_with(pid, name))
            continue;
        /* A descendant: its chain of parents reaches root (bounded, in case a PID is reused meanwhile). */
        pid_t up = pid;
        for (int depth = 0; depth < 32 && up > 1 && found < 0; depth++) {
            up = parent_of(up);
            if (up == root)
                found = pid;
        }
    }
    closedir(dir);
    return found;
}

int sup_non_reader_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -errno;
    int small = 4096;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&address, sizeof address) != 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

uint64_t sup_flood_until_stalled(const int *fds, int count, uint64_t cap, int quiet_ms, int max_ms)
{
    static char chunk[65536];
    uint64_t total = 0;
    uint64_t *each = calloc((size_t)count, sizeof *each);
    if (!each)
        return 0;
    int64_t start = sup_now_ms(), last_progress = start;
    while (sup_now_ms() - last_progress < quiet_ms && sup_now_ms() - start < max_ms) {
        bool moved = false;
        for (int i = 0; i < count; i++) {
            size_t want = sizeof chunk;
            if (cap && each[i] + want > cap)
                want = (size_t)(cap - each[i]);
            if (!want)
                continue;
            ssize_t n = send(fds[i], chunk, want, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (n > 0) {
                total += (uint64_t)n;
                each[i] += (uint64_t)n;
                moved = true;
            }
        }
        if (moved)
            last_progress = sup_now_ms();
        else
            sup_sleep_ms(5);
    }
    free(each);
    return total;
}

bool sup_latest_stats_line(sup_proc *proc, char *line, size_t cap, int ms)
{
    char next[2048];
    bool any = false;
    int64_t deadline = sup_now_ms() + ms;
    while (sup_now_ms() < deadline) {
        if (sup_proc_read_line(proc, next, sizeof next, (int)(deadline - sup_now_ms())) != 0)
            break;
        if (next[0] == '{') {
            snprintf(line, cap, "%s", next);
            any = true;
        }
    }
    return any;
}

bool sup_wait_stats_line(sup_proc *proc, char *line, size_t cap, int ms)
{
    for (int64_t deadline = sup_now_ms() + ms; sup_now_ms() < deadline;)
        if (sup_latest_stats_line(proc, line, cap, 200))
            return true;
    return false;
}

long long sup_json_number(const char *line, const char *key)
{
    char pattern[64];
    snprintf(pattern, sizeof pattern, "\"%s\":", key);
    const char *at = strstr(line, pattern);
    return at ? atoll(at + strlen(pattern)) : -1;
}

bool sup_settled_stats_line(sup_proc *proc, char *line, size_t cap, int every_ms, int rounds)
{
    long long in = -1;
    bool any = false;
    for (int round = 0; round < rounds; round++) {
        long long before = in;
        if (sup_latest_stats_line(proc, line, cap, every_ms))
            any = true;
        in = sup_json_number(line, "bytes_in");
        if (in == before)
            break;
    }
    return any;
}

long long sup_latest_stat(sup_proc *proc, const char *key, int ms)
{
    char line[2048];
    return sup_latest_stats_line(proc, line, sizeof line, ms) ? sup_json_number(line, key) : -1;
}
