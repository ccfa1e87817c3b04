/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The two systemd service protocols, written against their documented
 * wire formats (sd_notify(3), sd_listen_fds(3)) so that no libsystemd is
 * needed: readiness datagrams to $NOTIFY_SOCKET, and listening sockets
 * passed as fds 3.. with $LISTEN_PID/$LISTEN_FDS/$LISTEN_FDNAMES.
 */
#include "server/server.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define SD_LISTEN_FDS_START 3

int xr_sd_notify(const char *state)
{
    const char *path = getenv("NOTIFY_SOCKET");
    if (!path || !*path)
        return 0;
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    size_t n = strlen(path);
    /* "@name" is a socket in the abstract namespace: a leading NUL. */
    if ((path[0] != '/' && path[0] != '@') || n >= sizeof sa.sun_path)
        return XR_EINVAL;
    memcpy(sa.sun_path, path, n);
    if (path[0] == '@')
        sa.sun_path[0] = '\0';
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return XR_EIO;
    ssize_t w = sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sa,
                       (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n));
    int e = errno;
    close(fd);
    errno = e;
    return w < 0 ? XR_EIO : 1;
}

int xr_sd_notify_reloading(void)
{
    /* systemd >= 253 (Type=notify-reload) wants the time of the reload. */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    char msg[64];
    snprintf(msg, sizeof msg, "RELOADING=1\nMONOTONIC_USEC=%llu",
             (unsigned long long)ts.tv_sec * 1000000ull + (unsigned long long)ts.tv_nsec / 1000);
    return xr_sd_notify(msg);
}

int xr_sd_listen_fds(int *fds, int *tls, size_t max, char *err, size_t errlen)
{
    const char *pid = getenv("LISTEN_PID"), *nfds = getenv("LISTEN_FDS");
    if (!pid || !nfds)
        return 0;
    char *end;
    long p = strtol(pid, &end, 10);
    if (*end || p != (long)getpid())
        return 0;           /* meant for another process */
    long n = strtol(nfds, &end, 10);
    if (*end || n < 1 || (size_t)n > max) {
        snprintf(err, errlen, "LISTEN_FDS=%s: expected 1 to %zu sockets", nfds, max);
        return XR_ELISTEN;
    }
    /* Names say plain ("ws") or TLS ("wss"); others follow --tls-cert. */
    const char *names = getenv("LISTEN_FDNAMES");
    for (long k = 0; k < n; k++) {
        int fd = SD_LISTEN_FDS_START + (int)k, type = 0, listening = 0;
        socklen_t l = sizeof type;
        if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &l) != 0 || type != SOCK_STREAM ||
            getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &(socklen_t){sizeof listening}) != 0 ||
            !listening) {
            snprintf(err, errlen, "LISTEN_FDS: fd %d is not a listening stream socket", fd);
            return XR_ELISTEN;
        }
        fcntl(fd, F_SETFD, FD_CLOEXEC);
        fds[k] = fd;
        tls[k] = -1;
        if (names) {
            const char *s = names;
            for (long j = 0; j < k && s; j++)
                s = (s = strchr(s, ':')) ? s + 1 : NULL;
            if (s) {
                size_t len = strcspn(s, ":");
                if (len == 2 && memcmp(s, "ws", 2) == 0)
                    tls[k] = 0;
                else if (len == 3 && memcmp(s, "wss", 3) == 0)
                    tls[k] = 1;
            }
        }
    }
    /* Children (workers, anything exec'd) must not take them for theirs. */
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    return (int)n;
}
