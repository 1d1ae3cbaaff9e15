/*
 * rebind.so: moves a wrapped program's listening port so websockify can
 * take it.
 *
 * websockify starts the program with this library in LD_PRELOAD and two
 * variables in its environment:
 *
 *   REBIND_OLD_PORT  the port websockify listens on (the one the program
 *                    would bind)
 *   REBIND_NEW_PORT  a free loopback port websockify proxies to
 *
 * Every bind() of a TCP socket to REBIND_OLD_PORT, on any address, lands on
 * a loopback address at REBIND_NEW_PORT instead. Other binds, and UDP
 * sockets (which cannot collide with websockify's TCP listener), pass
 * through untouched. The environment is inherited, so the program's
 * children are moved too.
 *
 * Where a socket lands (websockify looks for 127.0.0.1 first, then ::1):
 *
 *   IPv4, any address                  -> 127.0.0.1:NEW
 *   IPv6 ::, accepting IPv4 as well    -> ::ffff:127.0.0.1:NEW, so it is
 *     (IPV6_V6ONLY off, Linux default)    reachable at 127.0.0.1:NEW
 *   IPv6 ::ffff:a.b.c.d (IPv4-mapped)  -> ::ffff:127.0.0.1:NEW
 *   IPv6 ::, IPV6_V6ONLY on            -> [::1]:NEW (a program that also
 *                                         binds 0.0.0.0 keeps both)
 *   IPv6 ::1 or any other address      -> [::1]:NEW
 *
 * Build: cc -shared -fPIC -O2 -o rebind.so rebind.c -ldl (make build puts
 * it in bin/, beside websockify; websockify builds it on demand otherwise)
 */

#define _GNU_SOURCE /* RTLD_NEXT */
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

typedef int (*bind_func)(int, const struct sockaddr *, socklen_t);

/* Looked up once at load; bind() looks again if the constructor has not
 * run yet (a bind from another library's constructor). */
static bind_func next_bind;

__attribute__((constructor)) static void find_next_bind(void)
{
    next_bind = (bind_func)dlsym(RTLD_NEXT, "bind");
}

/* A port from the environment, or 0 if unset or not a port number. */
static int env_port(const char *name)
{
    const char *text = getenv(name);
    char *end;
    long port;

    if (text == NULL || *text == '\0')
        return 0;
    port = strtol(text, &end, 10);
    if (*end != '\0' || port < 1 || port > 65535)
        return 0;
    return (int)port;
}

static int is_stream_socket(int fd)
{
    int type = 0;
    socklen_t len = sizeof(type);

    return getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 &&
           type == SOCK_STREAM;
}

/* Whether an IPv6 socket also accepts IPv4 connections. */
static int accepts_ipv4(int fd)
{
    int v6only = 1;
    socklen_t len = sizeof(v6only);

    return getsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, &len) == 0 &&
           !v6only;
}

int bind(int fd, const struct sockaddr *addr, socklen_t addrlen)
{
    int old_port, new_port;

    if (next_bind == NULL)
        find_next_bind();
    if (next_bind == NULL) {
        errno = ENOSYS;
        return -1;
    }
    if (addr == NULL)
        return next_bind(fd, addr, addrlen);
    old_port = env_port("REBIND_OLD_PORT");
    new_port = env_port("REBIND_NEW_PORT");
    if (old_port == 0 || new_port == 0)
        return next_bind(fd, addr, addrlen);

    if (addr->sa_family == AF_INET && addrlen >= sizeof(struct sockaddr_in)) {
        struct sockaddr_in in4;

        memcpy(&in4, addr, sizeof(in4));
        if (ntohs(in4.sin_port) != old_port || !is_stream_socket(fd))
            return next_bind(fd, addr, addrlen);
        in4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        in4.sin_port = htons(new_port);
        return next_bind(fd, (const struct sockaddr *)&in4, sizeof(in4));
    }

    if (addr->sa_family == AF_INET6 && addrlen >= sizeof(struct sockaddr_in6)) {
        struct sockaddr_in6 in6;
        int to_ipv4;

        memcpy(&in6, addr, sizeof(in6));
        if (ntohs(in6.sin6_port) != old_port || !is_stream_socket(fd))
            return next_bind(fd, addr, addrlen);
        to_ipv4 = IN6_IS_ADDR_V4MAPPED(&in6.sin6_addr) ||
                  (IN6_IS_ADDR_UNSPECIFIED(&in6.sin6_addr) && accepts_ipv4(fd));
        memset(&in6.sin6_addr, 0, sizeof(in6.sin6_addr));
        if (to_ipv4) {
            /* ::ffff:127.0.0.1 */
            in6.sin6_addr.s6_addr[10] = 0xff;
            in6.sin6_addr.s6_addr[11] = 0xff;
            in6.sin6_addr.s6_addr[12] = 127;
            in6.sin6_addr.s6_addr[15] = 1;
        } else {
            in6.sin6_addr.s6_addr[15] = 1; /* ::1 */
        }
        in6.sin6_port = htons(new_port);
        in6.sin6_scope_id = 0;
        return next_bind(fd, (const struct sockaddr *)&in6, sizeof(in6));
    }

    return next_bind(fd, addr, addrlen);
}
