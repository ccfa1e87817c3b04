/* SPDX-License-Identifier: Apache-2.0 */
/*
 * --workers N: N processes, each a whole server with its own loop, share
 * every listening port through SO_REUSEPORT, so the kernel spreads new
 * connections over them. The parent only supervises: it forwards
 * SIGTERM/SIGINT/SIGHUP, restarts a worker that dies, and returns when all
 * have drained. It runs no event loop (a libevent base must not serve both
 * sides of a fork), just sigsuspend().
 */
#include "server/server.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#include <netinet/in.h>

#include <event2/event.h>
#include <event2/util.h>

#include "util/clock.h"

/* A worker that dies this soon after its start failed to start: its
 * siblings would fail the same way, so the supervisor gives up. */
#define XR_WORKER_MIN_LIFE_MS 1000

static volatile sig_atomic_t got_term, got_hup, got_chld, got_alarm;

static void on_sig(int sig)
{
    switch (sig) {
    case SIGTERM: case SIGINT: got_term++; break;
    case SIGHUP: got_hup = 1; break;
    case SIGCHLD: got_chld = 1; break;
    case SIGALRM: got_alarm = 1; break;
    }
}

static const int sup_sigs[] = {SIGTERM, SIGINT, SIGHUP, SIGCHLD, SIGALRM};
#define N_SUP_SIGS (sizeof sup_sigs / sizeof sup_sigs[0])

typedef struct worker {
    pid_t pid;          /* 0: not running */
    uint64_t started_ms;
} worker;

/*
 * Binds (without listening) one socket per listener in the parent: bad
 * addresses and ports in use are reported before any fork, and port 0
 * becomes one real port all workers then share.
 */
static int probe_listeners(xr_server *srv, int *fds)
{
    for (size_t k = 0; k < xr_transport_n_specs(&srv->opts); k++) {
        int api;
        const char *spec = xr_transport_spec(&srv->opts, k, &api);
        char host[256];
        int tls;
        struct evutil_addrinfo *ai;
        if (xr_listen_resolve(spec, srv->opts.tls_cert != NULL, srv->ports[k], host, &tls, &ai,
                              srv->error, sizeof srv->error) < 0)
            return XR_ELISTEN;
        int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
        int ok = fd >= 0 &&
                 setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0 &&
                 setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) == 0 &&
                 bind(fd, ai->ai_addr, ai->ai_addrlen) == 0;
        int e = errno;
        evutil_freeaddrinfo(ai);
        fds[k] = fd;
        if (!ok) {
            snprintf(srv->error, sizeof srv->error, "cannot listen on %s: %s", spec, strerror(e));
            return XR_ELISTEN;
        }
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        getsockname(fd, (struct sockaddr *)&ss, &sl);
        srv->ports[k] = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                       : ((struct sockaddr_in *)&ss)->sin_port);
    }
    return XR_OK;
}

static void close_fds(int *fds, size_t n)
{
    for (size_t k = 0; k < n; k++)
        if (fds[k] >= 0) {
            close(fds[k]);
            fds[k] = -1;
        }
}

/* Signals as the parent found them, restored in each worker. */
static struct sigaction saved_act[N_SUP_SIGS];
static sigset_t saved_mask;

static pid_t spawn(xr_server *srv, worker *w, unsigned id, int *fds)
{
    fflush(NULL);  /* or buffered output would be written twice */
    pid_t pid = fork();
    if (pid < 0) {
        XR_ERROR(&srv->log, "cannot fork worker %u: %s", id, strerror(errno));
        return -1;
    }
    if (pid == 0) {
        for (size_t k = 0; k < N_SUP_SIGS; k++)
            sigaction(sup_sigs[k], &saved_act[k], NULL);
        /* The supervisor forwards SIGHUP/SIGTERM/SIGINT from now on, but
         * their default action would kill this worker until the loop
         * handles them: they stay blocked (pending) until xr_server_run
         * has added its signal events. */
        sigset_t mask = saved_mask;
        sigaddset(&mask, SIGHUP);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigprocmask(SIG_SETMASK, &mask, NULL);
#ifdef __linux__
        /* A supervisor killed with SIGKILL must not leave workers serving. */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() == 1)
            _exit(1);
#endif
        close_fds(fds, xr_transport_n_specs(&srv->opts));
        /* Readiness is the supervisor's to say (NotifyAccess=main). */
        unsetenv("NOTIFY_SOCKET");
        srv->worker = id;
        srv->log.worker = id;
        xr_transport_set_worker(srv->t, id);
        if (event_reinit(srv->base) < 0) {
            XR_ERROR(&srv->log, "worker %u: cannot re-create the event loop after fork", id);
            _exit(1);
        }
        return 0;
    }
    w->pid = pid;
    w->started_ms = xr_now_ms();
    XR_INFO(&srv->log, "worker %u started (pid %ld)", id, (long)pid);
    return pid;
}

static void forward(const worker *ws, unsigned n, int sig)
{
    for (unsigned k = 0; k < n; k++)
        if (ws[k].pid > 0)
            kill(ws[k].pid, sig);
}

/* SIGTERM to every worker, and a bound on how long they may take: workers
 * bound their own drain, this bounds the supervisor's wait. */
static void stop_workers(const xr_server *srv, const worker *ws, unsigned n)
{
    forward(ws, n, SIGTERM);
    alarm(srv->opts.drain_timeout_ms / 1000 + 5);
}

static void describe(int status, char *buf, size_t len)
{
    if (WIFEXITED(status))
        snprintf(buf, len, "exited with status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, len, "was killed by signal %d (%s)", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
    else
        snprintf(buf, len, "ended (status 0x%x)", (unsigned)status);
}

int xr_workers_run(xr_server *srv)
{
    unsigned n = srv->opts.workers;
    int fds[XR_MAX_LISTENERS + 1];
    for (size_t k = 0; k < XR_MAX_LISTENERS + 1; k++)
        fds[k] = -1;
    /* Sockets passed by systemd are shared as they are; else bind here
     * first, so that errors come before any fork. */
    int rc = srv->n_sd ? XR_OK : probe_listeners(srv, fds);
    if (rc < 0) {
        close_fds(fds, xr_transport_n_specs(&srv->opts));
        XR_ERROR(&srv->log, "%s", srv->error);
        return rc;
    }
    worker *ws = calloc(n, sizeof *ws);
    if (!ws) {
        close_fds(fds, xr_transport_n_specs(&srv->opts));
        snprintf(srv->error, sizeof srv->error, "out of memory");
        return XR_ENOMEM;
    }

    /* Signals stay blocked except inside sigsuspend(): none is lost
     * between looking at the flags and waiting. */
    sigset_t block, wait_mask;
    sigemptyset(&block);
    for (size_t k = 0; k < N_SUP_SIGS; k++)
        sigaddset(&block, sup_sigs[k]);
    sigprocmask(SIG_BLOCK, &block, &saved_mask);
    wait_mask = saved_mask;
    for (size_t k = 0; k < N_SUP_SIGS; k++)
        sigdelset(&wait_mask, sup_sigs[k]);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sig;
    sigemptyset(&sa.sa_mask);
    for (size_t k = 0; k < N_SUP_SIGS; k++)
        sigaction(sup_sigs[k], &sa, &saved_act[k]);
    got_term = got_hup = got_chld = got_alarm = 0;

    XR_INFO(&srv->log, "supervising %u workers (pid %ld)", n, (long)getpid());
    int stopping = 0, failed = 0;
    unsigned alive = 0, forwarded_terms = 0;
    for (unsigned k = 0; k < n && !failed; k++) {
        pid_t p = spawn(srv, &ws[k], k + 1, fds);
        if (p == 0) {
            free(ws);
            return 1;
        }
        if (p < 0)
            failed = 1;
        else
            alive++;
    }
    if (failed) {
        stopping = 1;
        stop_workers(srv, ws, n);
        snprintf(srv->error, sizeof srv->error, "cannot start %u workers", n);
    } else {
        /* The ports are bound (or were passed): connections wait in the
         * backlog for the first worker to accept them. */
        xr_sd_notify("READY=1\nSTATUS=serving");
    }

    while (alive) {
        sigsuspend(&wait_mask);
        if (got_term > (sig_atomic_t)forwarded_terms) {
            /* The second signal makes the workers exit without waiting,
             * as it does in a single process. */
            forwarded_terms = (unsigned)got_term;
            if (!stopping) {
                XR_INFO(&srv->log, "stopping: draining %u workers", alive);
                xr_sd_notify("STOPPING=1\nSTATUS=draining");
            }
            stopping = 1;
            stop_workers(srv, ws, n);
        }
        if (got_hup) {
            got_hup = 0;
            xr_sd_notify_reloading();
            forward(ws, n, SIGHUP);
            xr_sd_notify("READY=1\nSTATUS=serving");
        }
        if (got_alarm) {
            got_alarm = 0;
            if (stopping) {
                XR_WARN(&srv->log, "workers did not stop in time: killing them");
                forward(ws, n, SIGKILL);
            }
        }
        if (!got_chld)
            continue;
        got_chld = 0;
        int status;
        pid_t pid;
        while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
            unsigned k = 0;
            while (k < n && ws[k].pid != pid)
                k++;
            if (k == n)
                continue;   /* not ours (the application's own child) */
            ws[k].pid = 0;
            alive--;
            xr_transport_worker_gone(srv->t, k + 1);
            char how[96];
            describe(status, how, sizeof how);
            int clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
            if (stopping) {
                if (!clean)
                    failed = 1;
                XR_INFO(&srv->log, "worker %u (pid %ld) %s", k + 1, (long)pid, how);
                continue;
            }
            if (xr_now_ms() - ws[k].started_ms < XR_WORKER_MIN_LIFE_MS) {
                XR_ERROR(&srv->log, "worker %u (pid %ld) %s right after starting: stopping", k + 1,
                         (long)pid, how);
                snprintf(srv->error, sizeof srv->error,
                         "worker %u %s right after starting (see the log above)", k + 1, how);
                failed = 1;
                stopping = 1;
                stop_workers(srv, ws, n);
                continue;
            }
            XR_WARN(&srv->log, "worker %u (pid %ld) %s: restarting it", k + 1, (long)pid, how);
            pid_t p = spawn(srv, &ws[k], k + 1, fds);
            if (p == 0) {
                free(ws);
                return 1;
            }
            if (p > 0)
                alive++;
        }
    }
    alarm(0);
    for (size_t k = 0; k < N_SUP_SIGS; k++)
        sigaction(sup_sigs[k], &saved_act[k], NULL);
    sigprocmask(SIG_SETMASK, &saved_mask, NULL);
    close_fds(fds, xr_transport_n_specs(&srv->opts));
    free(ws);
    if (failed) {
        if (!srv->error[0])
            snprintf(srv->error, sizeof srv->error, "a worker did not stop cleanly");
        return XR_EIO;
    }
    XR_INFO(&srv->log, "all workers stopped");
    return XR_OK;
}
