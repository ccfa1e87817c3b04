/* SPDX-License-Identifier: Apache-2.0 */
#include "util/hash.h"

#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

static inline uint64_t rotl(uint64_t x, unsigned b) { return x << b | x >> (64 - b); }

static inline uint64_t load64(const uint8_t *p)
{
    uint64_t w;
    memcpy(&w, p, 8);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    w = __builtin_bswap64(w);
#endif
    return w;
}

#define SIPROUND                                                              \
    do {                                                                      \
        v0 += v1; v1 = rotl(v1, 13); v1 ^= v0; v0 = rotl(v0, 32);             \
        v2 += v3; v3 = rotl(v3, 16); v3 ^= v2;                                \
        v0 += v3; v3 = rotl(v3, 21); v3 ^= v0;                                \
        v2 += v1; v1 = rotl(v1, 17); v1 ^= v2; v2 = rotl(v2, 32);             \
    } while (0)

static inline uint64_t sip(uint64_t k0, uint64_t k1, unsigned c, unsigned d, const void *data,
                           size_t len)
{
    const uint8_t *p = data;
    uint64_t v0 = k0 ^ 0x736f6d6570736575ull, v1 = k1 ^ 0x646f72616e646f6dull;
    uint64_t v2 = k0 ^ 0x6c7967656e657261ull, v3 = k1 ^ 0x7465646279746573ull;
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t m = load64(p + i);
        v3 ^= m;
        for (unsigned r = 0; r < c; r++)
            SIPROUND;
        v0 ^= m;
    }
    uint64_t b = (uint64_t)len << 56;
    for (unsigned k = 0; i + k < len; k++)
        b |= (uint64_t)p[i + k] << (8 * k);
    v3 ^= b;
    for (unsigned r = 0; r < c; r++)
        SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    for (unsigned r = 0; r < d; r++)
        SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

uint64_t xr_siphash(const uint8_t k[16], unsigned c, unsigned d, const void *data, size_t len)
{
    return sip(load64(k), load64(k + 8), c, d, data, len);
}

static uint64_t key[2];
static pthread_once_t key_once = PTHREAD_ONCE_INIT;

static void make_key(void)
{
    uint8_t k[16];
    size_t got = 0;
    while (got < sizeof k) {
        ssize_t n = getrandom(k + got, sizeof k - got, 0);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    if (got < sizeof k) {
        /* No getrandom (an old kernel, a seccomp filter): the kernel's
         * pool through the device, or at worst what changes per start. */
        int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
        ssize_t n = fd >= 0 ? read(fd, k, sizeof k) : -1;
        if (fd >= 0)
            close(fd);
        if (n != (ssize_t)sizeof k) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            uint64_t w[2] = {(uint64_t)ts.tv_nsec ^ (uint64_t)getpid() << 32,
                             (uint64_t)ts.tv_sec ^ (uint64_t)(uintptr_t)&ts};
            memcpy(k, w, sizeof k);
        }
    }
    key[0] = load64(k);
    key[1] = load64(k + 8);
}

uint64_t xr_hash(const void *data, size_t len)
{
    pthread_once(&key_once, make_key);
    return sip(key[0], key[1], 1, 3, data, len);
}
