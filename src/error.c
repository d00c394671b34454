/*
 * error.c - one error convention end to end: negative errno values, turned into text here and only here.
 */
#include "internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *ovl_version(void)
{
    return OVL_VERSION_STRING;
}

#ifdef _WIN32
/* Text for the Winsock codes a network program meets, for systems whose FormatMessage has none for them (Wine, a
 * stripped-down image): "Windows error 10048" tells an operator nothing. */
static const char *winsock_text(int code)
{
    switch (code) {
    case WSAEINTR: return "interrupted function call";
    case WSAEACCES: return "permission denied";
    case WSAEFAULT: return "bad address";
    case WSAEINVAL: return "invalid argument";
    case WSAEMFILE: return "too many open sockets";
    case WSAEWOULDBLOCK: return "resource temporarily unavailable";
    case WSAENOTSOCK: return "not a socket";
    case WSAEMSGSIZE: return "message too long";
    case WSAEAFNOSUPPORT: return "address family not supported";
    case WSAEADDRINUSE: return "address already in use";
    case WSAEADDRNOTAVAIL: return "cannot assign requested address";
    case WSAENETDOWN: return "network is down";
    case WSAENETUNREACH: return "network is unreachable";
    case WSAENETRESET: return "connection reset by the network";
    case WSAECONNABORTED: return "connection aborted";
    case WSAECONNRESET: return "connection reset by peer";
    case WSAENOBUFS: return "no buffer space available";
    case WSAENOTCONN: return "socket is not connected";
    case WSAESHUTDOWN: return "cannot send after socket shutdown";
    case WSAETIMEDOUT: return "connection timed out";
    case WSAECONNREFUSED: return "connection refused";
    case WSAEHOSTUNREACH: return "no route to host";
    case WSAEPROCLIM: return "too many processes";
    case WSASYSNOTREADY: return "network subsystem is unavailable";
    case WSANOTINITIALISED: return "Winsock is not initialised";
    case WSAHOST_NOT_FOUND: return "host not found";
    case WSATRY_AGAIN: return "name lookup failed for now; try again";
    case WSANO_RECOVERY: return "name lookup failed";
    case WSANO_DATA: return "no address for this name";
    default: return NULL;
    }
}
#endif

const char *ovl_strerror(int err)
{
    static _Thread_local char text[256];
    int code = err < 0 ? -err : err;
    if (code == 0)
        return "Success";
#ifdef _WIN32
    /* Winsock and Win32 codes (>= 200 here) have system message text; small ones are C runtime errno values. A small
     * Win32 code the library could not map comes with bit 29 set (ovl__win_error): its own text, without it. */
    if (code & 0x20000000) {
        code &= ~0x20000000;
    } else if (code < 200) {
        strerror_s(text, sizeof text, code);
        return text;
    }
    DWORD length = FormatMessageA(FORMAT_MESSAGE_FROM_SYSTEM | FORMAT_MESSAGE_IGNORE_INSERTS, NULL, (DWORD)code,
                                  MAKELANGID(LANG_NEUTRAL, SUBLANG_DEFAULT), text, sizeof text, NULL);
    while (length > 0 && (text[length - 1] == '\n' || text[length - 1] == '\r' || text[length - 1] == '.'))
        text[--length] = '\0';
    if (length == 0) {
        const char *known = winsock_text(code);
        if (known)
            snprintf(text, sizeof text, "%s", known);
        else
            snprintf(text, sizeof text, "Windows error %d", code);
    }
    return text;
#else
    /* strerror_r (GNU flavour) may return a static string instead of filling the buffer. */
    return strerror_r(code, text, sizeof text);
#endif
}

const char *ovl_close_reason_name(ovl_close_reason reason)
{
    switch (reason) {
    case OVL_CLOSE_PEER: return "peer closed";
    case OVL_CLOSE_RESET: return "reset by peer";
    case OVL_CLOSE_ERROR: return "error";
    case OVL_CLOSE_LOCAL: return "closed locally";
    case OVL_CLOSE_ENGINE_STOP: return "engine stopped";
    case OVL_CLOSE_CONNECT_FAILED: return "connect failed";
    case OVL_CLOSE_REFUSED: return "refused (max connections)";
    case OVL_CLOSE_IDLE: return "idle timeout";
    case OVL_CLOSE_STALLED: return "stalled: the peer does not read";
    }
    return "unknown";
}

void ovl__log(const ovl_engine *engine, ovl_log_level level, const char *format, ...)
{
    if (!engine || !engine->config.log)
        return;
    char message[320];
    va_list args;
    va_start(args, format);
    vsnprintf(message, sizeof message, format, args);
    va_end(args);
    engine->config.log(engine->config.log_user, level, message);
}

void ovl__error_set(ovl_error_info *err, int code, const char *text, const char *what_format, ...)
{
    if (!err)
        return;
    err->code = code;
    va_list args;
    va_start(args, what_format);
    vsnprintf(err->what, sizeof err->what, what_format, args);
    va_end(args);
    snprintf(err->text, sizeof err->text, "%s", text ? text : ovl_strerror(code));
}
