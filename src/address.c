/*
 * address.c - name resolution and listening sockets: getaddrinfo, dual-stack binding, address text.
 */
#include "alloc.h"
#include "internal.h"

#ifndef _WIN32
#include <fcntl.h>
#include <ifaddrs.h>
#endif

#include <errno.h>
#include <stdio.h>
#include <string.h>
#ifndef _WIN32
#include <arpa/inet.h>
#endif

void ovl__format_address(const struct sockaddr *address, char *out, size_t out_size)
{
    char host[INET6_ADDRSTRLEN] = "?";
    if (address->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)address;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        snprintf(out, out_size, "[%s]:%u", host, ntohs(in6->sin6_port));
    } else if (address->sa_family == AF_INET) {
        const struct sockaddr_in *in4 = (const struct sockaddr_in *)address;
        inet_ntop(AF_INET, &in4->sin_addr, host, sizeof host);
        snprintf(out, out_size, "%s:%u", host, ntohs(in4->sin_port));
    } else {
        snprintf(out, out_size, "(family %d)", address->sa_family);
    }
}

static void set_port(struct sockaddr *address, int port)
{
    if (address->sa_family == AF_INET6)
        ((struct sockaddr_in6 *)address)->sin6_port = htons((uint16_t)port);
    else if (address->sa_family == AF_INET)
        ((struct sockaddr_in *)address)->sin_port = htons((uint16_t)port);
}

static bool is_ipv6_any(const struct addrinfo *ai)
{
    return ai->ai_family == AF_INET6 &&
           IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)ai->ai_addr)->sin6_addr);
}

#ifndef _WIN32
/* Linux copies TCP_NODELAY and the keepalive settings from a listening socket to every accepted one, which saves
 * each connection its setsockopt calls. */
static void inherited_options(const ovl_config *config, ovl__socket fd)
{
    ovl__set_int_option(fd, IPPROTO_TCP, TCP_NODELAY, 1);
    if (config->keepalive_ms > 0)
        ovl__socket_keepalive(fd, (uint32_t)config->keepalive_ms);
}
#endif

/* Open, bind and listen one socket into *out. Returns 0 or a negative error with err filled. */
static int listen_one(const ovl_config *config, const struct addrinfo *ai, bool dual_stack, ovl__socket *out,
                      ovl_error_info *err)
{
    int backlog = config->backlog > 0 ? config->backlog : SOMAXCONN;
    char where[64];
    ovl__format_address(ai->ai_addr, where, sizeof where);
    ovl__socket fd = ovl__socket_open(ai->ai_family);
    if (fd == OVL__NO_SOCKET) {
        int code = ovl__socket_error();
        ovl__error_set(err, code, NULL, "socket %s", where);
        return code;
    }
#ifdef _WIN32
    /* Neither option, as libuv decides. Windows' SO_REUSEADDR would let another socket take the port over. And
     * Microsoft documents that after a listener with SO_EXCLUSIVEADDRUSE that accepted connections is closed,
     * another socket with the option cannot bind the port until those connections are inactive: a service
     * restarted at once (sc stop and start, the failure actions) could fail with WSAEADDRINUSE while its previous
     * run's connections close. Without either, a restart binds over them, and a second live listener is still
     * refused; only a process of the same account setting SO_REUSEADDR could share the port (Windows' enhanced
     * socket security refuses other accounts). docs/WINDOWS.md, issue 16 item 9. */
#else
    /* SO_REUSEADDR: a restarted server can bind while old connections sit in TIME_WAIT. */
    ovl__set_int_option(fd, SOL_SOCKET, SO_REUSEADDR, 1);
    if (config->reuse_port && ovl__set_int_option(fd, SOL_SOCKET, SO_REUSEPORT, 1) != 0) {
        int code = ovl__socket_error();
        ovl__error_set(err, code, NULL, "SO_REUSEPORT %s", where);
        ovl__socket_close(fd);
        return code;
    }
    inherited_options(config, fd);
#endif
    if (ai->ai_family == AF_INET6)
        ovl__set_int_option(fd, IPPROTO_IPV6, IPV6_V6ONLY, dual_stack ? 0 : 1);
    if (bind(fd, ai->ai_addr, (socklen_t)ai->ai_addrlen) != 0) {
        int code = ovl__socket_error();
        ovl__error_set(err, code, NULL, "bind %s", where);
        ovl__socket_close(fd);
        return code;
    }
    if (listen(fd, backlog) != 0) {
        int code = ovl__socket_error();
        ovl__error_set(err, code, NULL, "listen %s", where);
        ovl__socket_close(fd);
        return code;
    }
    *out = fd;
    return 0;
}

static bool no_such_family(int code)
{
#ifdef _WIN32
    return code == -WSAEAFNOSUPPORT || code == -WSAEADDRNOTAVAIL;
#else
    return code == -EAFNOSUPPORT || code == -EADDRNOTAVAIL;
#endif
}

/* getaddrinfo's failure as a negative code and a text. */
static int resolve_error(int rc, const char **text)
{
#ifdef _WIN32
    *text = NULL; /* getaddrinfo returns a WSA code: FormatMessage text through ovl_strerror */
    return -rc;
#else
    if (rc == EAI_SYSTEM) {
        *text = NULL;
        return -errno;
    }
    *text = gai_strerror(rc);
    return rc == EAI_NONAME || rc == EAI_NODATA ? -EHOSTUNREACH : -EADDRNOTAVAIL;
#endif
}

static int add_socket(ovl_listener *listener, ovl__socket fd)
{
    if (listener->count == (int)(sizeof listener->sockets / sizeof listener->sockets[0])) {
        ovl__socket_close(fd);
        return 0; /* more addresses than we keep: serve the first ones */
    }
    struct ovl__listen_socket *s = &listener->sockets[listener->count++];
    s->listener = listener;
    s->fd = fd;
    struct sockaddr_storage bound;
    socklen_t bound_len = sizeof bound;
    getsockname(fd, (struct sockaddr *)&bound, &bound_len);
    ovl__format_address((struct sockaddr *)&bound, s->address, sizeof s->address);
    if (!listener->port)
        listener->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                            : ((struct sockaddr_in *)&bound)->sin_port);
    return 0;
}

int ovl__listener_open(ovl_engine *engine, ovl_listener *listener, const char *host, const char *port,
                       ovl_error_info *err)
{
    bool any_host = host == NULL || host[0] == '\0';
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *list = NULL;
    int rc = getaddrinfo(any_host ? NULL : host, port, &hints, &list);
    if (rc != 0) {
        const char *text;
        int code = resolve_error(rc, &text);
        ovl__error_set(err, code, text, "resolve %s:%s", any_host ? "*" : host, port);
        return code;
    }
    /* Every interface: one IPv6 socket with V6ONLY off serves IPv4 too; an IPv4 socket beside it would only
     * collide with it. Fall back to IPv4 where the system has no IPv6. */
    const struct addrinfo *dual = NULL;
    if (any_host)
        for (const struct addrinfo *ai = list; ai; ai = ai->ai_next)
            if (is_ipv6_any(ai)) {
                dual = ai;
                break;
            }
    int result = 0;
    listener->count = 0;
    listener->port = 0;
    if (dual) {
        ovl__socket fd;
        int rc6 = listen_one(&engine->config, dual, true, &fd, err);
        if (rc6 == 0)
            result = add_socket(listener, fd);
        else if (!no_such_family(rc6))
            result = rc6;
        else
            dual = NULL; /* no IPv6 on this system: bind the IPv4 wildcard below instead */
    }
    for (const struct addrinfo *ai = list; ai && result == 0 && !(any_host && listener->count > 0);
         ai = ai->ai_next) {
        if (ai->ai_family != AF_INET && (ai->ai_family != AF_INET6 || any_host))
            continue;
        /* port "0" on several addresses: take the port the first one got, so they all share it. */
        if (listener->port)
            set_port(ai->ai_addr, listener->port);
        ovl__socket fd;
        result = listen_one(&engine->config, ai, false, &fd, err);
        if (result == 0)
            result = add_socket(listener, fd);
    }
    freeaddrinfo(list);
    if (result == 0 && listener->count == 0) {
        result = -EADDRNOTAVAIL;
        ovl__error_set(err, result, "no IPv4 or IPv6 address", "listen %s:%s", any_host ? "*" : host, port);
    }
    if (result < 0)
        ovl__listener_close(listener);
    return result;
}

int ovl__listener_adopt(ovl_engine *engine, ovl_listener *listener, ovl__socket fd, ovl_error_info *err)
{
    int listening = 0, type = 0;
    socklen_t length = sizeof listening;
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, (char *)&listening, &length) != 0) {
        int code = ovl__socket_error();
        ovl__error_set(err, code, NULL, "listen on socket %lld", (long long)fd);
        return code;
    }
    length = sizeof type;
    getsockopt(fd, SOL_SOCKET, SO_TYPE, (char *)&type, &length);
    if (!listening || type != SOCK_STREAM) {
        ovl__error_set(err, -EINVAL, "not a listening TCP socket", "listen on socket %lld", (long long)fd);
        return -EINVAL;
    }
#ifdef _WIN32
    (void)engine;
#else
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    inherited_options(&engine->config, fd);
#endif
    listener->count = 0;
    listener->port = 0;
    return add_socket(listener, fd);
}

void ovl__listener_close(ovl_listener *listener)
{
    for (int i = 0; i < listener->count; i++)
        if (listener->sockets[i].fd != OVL__NO_SOCKET) {
            ovl__socket_close(listener->sockets[i].fd);
            listener->sockets[i].fd = OVL__NO_SOCKET;
        }
}

int ovl_target_resolve(ovl_target **out, const char *host, const char *port, ovl_error_info *err)
{
    if (!out || !port) {
        ovl__error_set(err, -EINVAL, NULL, "resolve: no %s", out ? "port" : "result pointer");
        return -EINVAL;
    }
    if (!host || !host[0])
        host = "localhost";
    int rc = ovl__net_init();
    if (rc < 0) {
        ovl__error_set(err, rc, NULL, "network initialisation");
        return rc;
    }
    ovl_target *target = ovl__zalloc(sizeof *target);
    if (!target) {
        ovl__net_cleanup();
        ovl__error_set(err, -ENOMEM, NULL, "resolve %s:%s", host, port);
        return -ENOMEM;
    }
    snprintf(target->name, sizeof target->name, "%s:%s", host, port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_ADDRCONFIG};
    rc = getaddrinfo(host, port, &hints, &target->addresses);
    if (rc != 0) {
        /* AI_ADDRCONFIG hides ::1 and 127.0.0.1 on hosts whose only interface is loopback: ask again without. */
        hints.ai_flags = 0;
        rc = getaddrinfo(host, port, &hints, &target->addresses);
    }
    if (rc != 0) {
        const char *text;
        int code = resolve_error(rc, &text);
        ovl__error_set(err, code, text, "resolve %s", target->name);
        ovl__free(target);
        ovl__net_cleanup();
        return code;
    }
    for (struct addrinfo *ai = target->addresses; ai; ai = ai->ai_next)
        target->count++;
    *out = target;
    return 0;
}

void ovl_target_free(ovl_target *target)
{
    if (!target)
        return;
    freeaddrinfo(target->addresses);
    ovl__free(target);
    ovl__net_cleanup();
}

const char *ovl_target_name(const ovl_target *target)
{
    return target->name;
}

static uint16_t address_port(const struct sockaddr *address)
{
    if (address->sa_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)address)->sin_port);
    if (address->sa_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)address)->sin6_port);
    return 0;
}

/* The same host address (the port aside), an IPv4 one and its IPv4-mapped IPv6 form alike. */
static bool same_host(const struct sockaddr *a, const struct sockaddr *b)
{
    struct in_addr v4a, v4b;
    bool a4 = a->sa_family == AF_INET, b4 = b->sa_family == AF_INET;
    const struct in6_addr *a6 = a4 ? NULL : &((const struct sockaddr_in6 *)a)->sin6_addr;
    const struct in6_addr *b6 = b4 ? NULL : &((const struct sockaddr_in6 *)b)->sin6_addr;
    if (a4 != b4) {
        const struct in6_addr *mapped = a4 ? b6 : a6;
        if (!IN6_IS_ADDR_V4MAPPED(mapped))
            return false;
        memcpy(&v4a, a4 ? &((const struct sockaddr_in *)a)->sin_addr : &((const struct sockaddr_in *)b)->sin_addr,
               sizeof v4a);
        memcpy(&v4b, (const unsigned char *)mapped + 12, sizeof v4b);
        return memcmp(&v4a, &v4b, sizeof v4a) == 0;
    }
    if (a4)
        return ((const struct sockaddr_in *)a)->sin_addr.s_addr == ((const struct sockaddr_in *)b)->sin_addr.s_addr;
    return memcmp(a6, b6, sizeof *a6) == 0;
}

static bool is_any_address(const struct sockaddr *address)
{
    if (address->sa_family == AF_INET)
        return ((const struct sockaddr_in *)address)->sin_addr.s_addr == htonl(INADDR_ANY);
    return address->sa_family == AF_INET6 &&
           IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)address)->sin6_addr);
}

/* One of this host's addresses: a loopback address (all of 127.0.0.0/8 on Linux), or one an interface has. Not
 * "a socket binds to it": with net.ipv4.ip_nonlocal_bind (VIP hosts) every bind succeeds. Windows binds only to
 * its own addresses, so there the bind tells. */
static bool is_local_address(const struct addrinfo *ai)
{
    const struct sockaddr *address = ai->ai_addr;
    if (address->sa_family == AF_INET &&
        (ntohl(((const struct sockaddr_in *)address)->sin_addr.s_addr) >> 24) == 127)
        return true;
    if (address->sa_family == AF_INET6) {
        const struct in6_addr *a6 = &((const struct sockaddr_in6 *)address)->sin6_addr;
        if (IN6_IS_ADDR_LOOPBACK(a6) || (IN6_IS_ADDR_V4MAPPED(a6) && ((const unsigned char *)a6)[12] == 127))
            return true;
    }
#ifdef _WIN32
    ovl__socket fd = ovl__socket_open(ai->ai_family);
    if (fd == OVL__NO_SOCKET)
        return false;
    struct sockaddr_storage any_port;
    memcpy(&any_port, ai->ai_addr, ai->ai_addrlen);
    if (any_port.ss_family == AF_INET)
        ((struct sockaddr_in *)&any_port)->sin_port = 0;
    else
        ((struct sockaddr_in6 *)&any_port)->sin6_port = 0;
    bool local = bind(fd, (struct sockaddr *)&any_port, (socklen_t)ai->ai_addrlen) == 0;
    ovl__socket_close(fd);
    return local;
#else
    struct ifaddrs *list = NULL;
    if (getifaddrs(&list) != 0)
        return false;
    bool local = false;
    for (const struct ifaddrs *entry = list; entry && !local; entry = entry->ifa_next)
        if (entry->ifa_addr && (entry->ifa_addr->sa_family == AF_INET || entry->ifa_addr->sa_family == AF_INET6))
            local = same_host(entry->ifa_addr, address);
    freeifaddrs(list);
    return local;
#endif
}

int ovl_target_reaches(const ovl_target *target, const ovl_listener *listener, const char **which)
{
    if (!target || !listener)
        return 0;
    for (const struct addrinfo *ai = target->addresses; ai; ai = ai->ai_next) {
        if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
            continue;
        for (int i = 0; i < listener->count; i++) {
            struct sockaddr_storage bound;
            socklen_t length = sizeof bound;
            if (getsockname(listener->sockets[i].fd, (struct sockaddr *)&bound, &length) != 0 ||
                address_port((struct sockaddr *)&bound) != address_port(ai->ai_addr))
                continue;
            /* An IPv4 listener on every interface does not take IPv6 connections; a dual-stack IPv6 one takes
             * both. Either way, an address it accepts on is one of this host's. */
            bool any = is_any_address((struct sockaddr *)&bound) &&
                       !(bound.ss_family == AF_INET && ai->ai_family == AF_INET6);
            if (same_host((struct sockaddr *)&bound, ai->ai_addr) || (any && is_local_address(ai))) {
                if (which)
                    *which = listener->sockets[i].address;
                return 1;
            }
        }
    }
    return 0;
}
