/* SPDX-License-Identifier: Apache-2.0 */
/* The util layer's defences: the keyed hash (SipHash against its published
 * vectors), the whole-server per-address counts, log lines made printable. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util/bucket.h"
#include "util/hash.h"
#include "util/iplimit.h"
#include "util/iprate.h"
#include "util/log.h"
#include "util/map.h"
#include "tap.h"

static void test_siphash_matches_the_reference_vectors(void)
{
    uint8_t k[16], m[16];
    for (int i = 0; i < 16; i++)
        k[i] = m[i] = (uint8_t)i;
    /* Aumasson and Bernstein's SipHash-2-4 vectors, key 00..0f. */
    CHECK(xr_siphash(k, 2, 4, m, 0) == 0x726fdb47dd0e0e31ull);
    CHECK(xr_siphash(k, 2, 4, m, 1) == 0x74f839c593dc67fdull);
    CHECK(xr_siphash(k, 2, 4, m, 15) == 0xa129ca6149be45e5ull);
    /* The process key is secret: not the all-zero key, and stable. */
    uint8_t zero[16] = {0};
    CHECK(xr_hash("room", 4) != xr_siphash(zero, 1, 3, "room", 4));
    CHECK(xr_hash("room", 4) == xr_hash("room", 4));
    CHECK(xr_hash("room", 4) != xr_hash("rooM", 4));
}

/* The i-th of 4096 names of 24 bytes equal under djb2 ("Aa" and "BB"
 * hash alike, so every string of twelve such pairs does). */
static const char *djb2_twin(char name[24], unsigned i)
{
    for (int b = 0; b < 12; b++)
        memcpy(name + 2 * b, (i >> b) & 1 ? "Aa" : "BB", 2);
    return name;
}

/* The longest chain of a chained table (entries linked through next). */
#define LONGEST_CHAIN(out, slots, n_slots, type)                  \
    do {                                                          \
        (out) = 0;                                                \
        for (size_t s_ = 0; s_ < (n_slots); s_++) {               \
            size_t n_ = 0;                                        \
            for (type *e_ = (slots)[s_]; e_; e_ = e_->next)       \
                n_++;                                             \
            if (n_ > (out))                                       \
                (out) = n_;                                       \
        }                                                         \
    } while (0)

/* Names that collide under an unkeyed hash (djb2: "Aa" and "BB") spread
 * over a map like any others. */
static void test_map_spreads_names_made_to_collide(void)
{
    xr_map m;
    xr_map_init(&m);
    char name[24];
    for (unsigned i = 0; i < 4096; i++)
        CHECK(xr_map_put(&m, djb2_twin(name, i), 24, (void *)(uintptr_t)(i + 1)) != NULL);
    size_t longest;
    LONGEST_CHAIN(longest, m.slots, m.n_slots, xr_map_entry);
    CHECK(longest < 16);
    xr_map_clear(&m);
}

static void test_iplimit_counts_every_table(void)
{
    xr_iplimit *l = xr_iplimit_new(8, 3);
    CHECK(l != NULL);
    const uint8_t a[4] = {10, 0, 0, 1}, b[4] = {10, 0, 0, 2};
    CHECK_EQ(xr_iplimit_take(l, 0, a, 4, 3), 1);
    CHECK_EQ(xr_iplimit_take(l, 1, a, 4, 3), 1);
    CHECK_EQ(xr_iplimit_take(l, 2, a, 4, 3), 1);
    CHECK_EQ(xr_iplimit_count(l, a, 4), 3);
    CHECK_EQ(xr_iplimit_take(l, 0, a, 4, 3), 0);     /* full over all workers */
    CHECK_EQ(xr_iplimit_take(l, 1, b, 4, 3), 1);     /* another address */
    xr_iplimit_put(l, 1, a, 4);
    CHECK_EQ(xr_iplimit_count(l, a, 4), 2);
    CHECK_EQ(xr_iplimit_take(l, 0, a, 4, 3), 1);
    xr_iplimit_reset(l, 0);                          /* worker 0 died */
    CHECK_EQ(xr_iplimit_count(l, a, 4), 1);
    CHECK_EQ(xr_iplimit_count(l, b, 4), 1);
    xr_iplimit_free(l);
}

/* Many addresses in a small table: deletions keep every other one
 * findable (linear probing's backward shift). */
static void test_iplimit_deletion_keeps_runs_whole(void)
{
    xr_iplimit *l = xr_iplimit_new(64, 1);
    uint8_t addr[16] = {0};
    for (unsigned i = 0; i < 100; i++) {
        memcpy(addr, &i, sizeof i);
        CHECK_EQ(xr_iplimit_take(l, 0, addr, 16, 2), 1);
    }
    for (unsigned i = 0; i < 100; i += 2) {
        memcpy(addr, &i, sizeof i);
        xr_iplimit_put(l, 0, addr, 16);
    }
    int ok = 1;
    for (unsigned i = 0; i < 100; i++) {
        memcpy(addr, &i, sizeof i);
        ok &= xr_iplimit_count(l, addr, 16) == (i % 2 ? 1u : 0u);
    }
    CHECK(ok);
    xr_iplimit_free(l);
}

/* The table is shared with processes forked after it was made. */
static void test_iplimit_shared_across_fork(void)
{
    xr_iplimit *l = xr_iplimit_new(8, 2);
    const uint8_t a[4] = {127, 0, 0, 1};
    pid_t pid = fork();
    if (pid == 0)
        _exit(xr_iplimit_take(l, 1, a, 4, 5) == 1 ? 0 : 1);
    int status;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK_EQ(xr_iplimit_count(l, a, 4), 1);
    xr_iplimit_free(l);
}

/* Finding 9 again: four workers taking the same address at the same
 * instant never hold more than the limit between them (the first fix
 * checked, then counted: each racing worker let one more in). Each
 * process holds what it took in a shared tally while it holds it. */
static void test_iplimit_racing_workers_never_pass_the_limit(void)
{
    enum { WORKERS = 4, ROUNDS = 200000, MAX = 2 };
    xr_iplimit *l = xr_iplimit_new(8, WORKERS);
    unsigned *shared = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(l != NULL && shared != MAP_FAILED);
    unsigned *held = &shared[0], *most = &shared[1], *taken = &shared[2], *go = &shared[3];
    const uint8_t a[4] = {192, 0, 2, 7};
    pid_t pids[WORKERS];
    for (unsigned w = 0; w < WORKERS; w++) {
        if ((pids[w] = fork()) == 0) {
            while (!__atomic_load_n(go, __ATOMIC_ACQUIRE))
                ;   /* all start together, or they would take in turn */
            for (int r = 0; r < ROUNDS; r++) {
                if (!xr_iplimit_take(l, w, a, 4, MAX))
                    continue;
                unsigned now = __atomic_add_fetch(held, 1, __ATOMIC_SEQ_CST);
                unsigned seen = __atomic_load_n(most, __ATOMIC_RELAXED);
                while (now > seen &&
                       !__atomic_compare_exchange_n(most, &seen, now, 0, __ATOMIC_SEQ_CST,
                                                    __ATOMIC_RELAXED))
                    ;
                __atomic_add_fetch(taken, 1, __ATOMIC_RELAXED);
                __atomic_sub_fetch(held, 1, __ATOMIC_SEQ_CST);
                xr_iplimit_put(l, w, a, 4);
            }
            _exit(0);
        }
    }
    __atomic_store_n(go, 1, __ATOMIC_RELEASE);
    for (unsigned w = 0; w < WORKERS; w++)
        waitpid(pids[w], NULL, 0);
    CHECK(*most <= MAX);
    CHECK(*taken >= ROUNDS / 10);                 /* the race was run, not refused */
    CHECK_EQ(xr_iplimit_count(l, a, 4), 0);       /* every take was put back */
    munmap(shared, 4096);
    xr_iplimit_free(l);
}

static char last[2048];
static void capture(xr_log_level level, unsigned worker, const char *msg, void *ud)
{
    (void)level, (void)worker, (void)ud;
    snprintf(last, sizeof last, "%s", msg);
}

/* Finding 3: a request_id with a newline and ESC went to the log raw. */
static void test_log_lines_are_made_printable(void)
{
    xr_logger log = {.level = XR_LOG_DEBUG, .format = XR_LOG_TEXT, .fn = capture};
    xr_log(&log, XR_LOG_WARN, "channel %s refused", "a\nWARN forged\x1b[31m\x7f");
    CHECK_STR(last, "channel a\\x0aWARN forged\\x1b[31m\\x7f refused");
    xr_log(&log, XR_LOG_INFO, "caf\xc3\xa9 \\ ok");
    CHECK_STR(last, "caf\xc3\xa9 \\ ok");
}

/* --rate-limit's bucket: full at first, refilled from the time elapsed
 * to the thousandth of a token. */
static void test_bucket_burst_then_rate_without_losing_refill(void)
{
    xr_bucket b = {0};
    uint64_t wait, t = 1000000;
    int taken = 0;
    for (int i = 0; i < 100; i++)
        taken += xr_bucket_take(&b, 10, 10, 1, t, &wait);
    CHECK_EQ(taken, 10);                /* 100 at once: the burst */
    CHECK_EQ(wait, 100);                /* the next one in 0.1 s */
    CHECK_EQ(xr_bucket_take(&b, 10, 10, 1, t + 99, &wait), 0);
    CHECK_EQ(wait, 1);
    CHECK_EQ(xr_bucket_take(&b, 10, 10, 1, t + 100, &wait), 1);
    /* Asked every 7 ms for 10 s (a share of 0.07 token a step, which
     * whole-token steps would drop): 100 more, not fewer. */
    taken = 0;
    for (uint64_t k = 1; k <= 10000 / 7; k++)
        taken += xr_bucket_take(&b, 10, 10, 1, t + 100 + 7 * k, &wait);
    CHECK(taken >= 99 && taken <= 100);
    /* Idle long enough, it is full again, never fuller. */
    taken = 0;
    for (int i = 0; i < 20; i++)
        taken += xr_bucket_take(&b, 10, 10, 1, t + 3600000, &wait);
    CHECK_EQ(taken, 10);
    /* Costs in bytes; one over the burst never fits. */
    xr_bucket c = {0};
    CHECK_EQ(xr_bucket_take(&c, 1000, 1000, 600, t, &wait), 1);
    CHECK_EQ(xr_bucket_take(&c, 1000, 1000, 600, t, &wait), 0);
    CHECK_EQ(wait, 200);
    CHECK_EQ(xr_bucket_take(&c, 1000, 1000, 1001, t + 5000, &wait), 0);
    CHECK(wait == UINT64_MAX);
}

/* --rate-limit-connections: a bucket per address, every worker's takes
 * against the same one. */
static void test_iprate_per_address_and_shared_across_fork(void)
{
    xr_iprate *r = xr_iprate_new(50, 50);
    CHECK(r != NULL);
    if (!r)
        return;
    const uint8_t a[4] = {10, 0, 0, 1}, b[4] = {10, 0, 0, 2}, a6[16] = {10, 0, 0, 1};
    uint64_t t = 5000000;
    int taken = 0;
    for (int i = 0; i < 100; i++)
        taken += xr_iprate_take(r, a, 4, t) == XR_IPRATE_TAKEN;
    CHECK_EQ(taken, 50);
    CHECK_EQ(xr_iprate_take(r, b, 4, t), XR_IPRATE_TAKEN);     /* another address */
    CHECK_EQ(xr_iprate_take(r, a6, 16, t), XR_IPRATE_TAKEN);   /* same bytes, IPv6 */
    /* At the rate for 10 s, one every 20 ms: every one. */
    taken = 0;
    for (int i = 1; i <= 500; i++)
        taken += xr_iprate_take(r, a, 4, t + 20 * (uint64_t)i) == XR_IPRATE_TAKEN;
    CHECK(taken >= 499);
    /* Twice the rate: half. */
    taken = 0;
    uint64_t t2 = t + 10000 + 2000;     /* full again first */
    for (int i = 0; i < 1000; i++)
        taken += xr_iprate_take(r, a, 4, t2 + 10 * (uint64_t)i) == XR_IPRATE_TAKEN;
    CHECK(taken >= 549 && taken <= 551);    /* the burst, then 50 a second */
    xr_iprate_free(r);

    /* Four processes take from one address at the same instant: the
     * burst, exactly, over all of them. */
    r = xr_iprate_new(10, 10);
    int *got = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(r != NULL && got != MAP_FAILED);
    if (!r || got == MAP_FAILED)
        return;
    for (int w = 0; w < 4; w++) {
        if (fork() == 0) {
            int n = 0;
            for (int i = 0; i < 2000; i++)
                n += xr_iprate_take(r, a, 4, t) == XR_IPRATE_TAKEN;
            got[w] = n;
            _exit(0);
        }
    }
    for (int w = 0; w < 4; w++)
        wait(NULL);
    CHECK_EQ(got[0] + got[1] + got[2] + got[3], 10);
    munmap(got, 4096);
    xr_iprate_free(r);
}

int main(void)
{
    RUN(test_siphash_matches_the_reference_vectors);
    RUN(test_map_spreads_names_made_to_collide);
    RUN(test_iplimit_counts_every_table);
    RUN(test_iplimit_deletion_keeps_runs_whole);
    RUN(test_iplimit_shared_across_fork);
    RUN(test_iplimit_racing_workers_never_pass_the_limit);
    RUN(test_log_lines_are_made_printable);
    RUN(test_bucket_burst_then_rate_without_losing_refill);
    RUN(test_iprate_per_address_and_shared_across_fork);
    return tap_done();
}
