/* SPDX-License-Identifier: Apache-2.0 */
/*
 * LD_PRELOAD shim for the allocation test: counts calls to malloc, calloc,
 * realloc and the aligned allocators in the process, and on SIGUSR2 writes
 * the count (decimal, newline) to the file named by XR_ALLOC_COUNT_FILE.
 * Only async-signal-safe calls in the handler: open, write, close.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <unistd.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);

static atomic_ulong calls;
static const char *out_path;

void *malloc(size_t n)
{
    atomic_fetch_add_explicit(&calls, 1, memory_order_relaxed);
    return __libc_malloc(n);
}

void *calloc(size_t n, size_t m)
{
    atomic_fetch_add_explicit(&calls, 1, memory_order_relaxed);
    return __libc_calloc(n, m);
}

void *realloc(void *p, size_t n)
{
    atomic_fetch_add_explicit(&calls, 1, memory_order_relaxed);
    return __libc_realloc(p, n);
}

int posix_memalign(void **p, size_t align, size_t n)
{
    atomic_fetch_add_explicit(&calls, 1, memory_order_relaxed);
    *p = __libc_memalign(align, n);
    return *p ? 0 : 12; /* ENOMEM */
}

void *aligned_alloc(size_t align, size_t n)
{
    atomic_fetch_add_explicit(&calls, 1, memory_order_relaxed);
    return __libc_memalign(align, n);
}

static void report(int sig)
{
    (void)sig;
    char buf[32];
    unsigned long v = atomic_load(&calls);
    int n = 0;
    char tmp[32];
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (int i = 0; i < n; i++)
        buf[i] = tmp[n - 1 - i];
    buf[n++] = '\n';
    int fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd >= 0) {
        ssize_t w = write(fd, buf, (size_t)n);
        (void)w;
        close(fd);
    }
}

__attribute__((constructor)) static void init(void)
{
    out_path = getenv("XR_ALLOC_COUNT_FILE");
    if (out_path) {
        struct sigaction sa = {0};
        sa.sa_handler = report;
        sa.sa_flags = SA_RESTART;
        sigaction(SIGUSR2, &sa, NULL);
    }
}
