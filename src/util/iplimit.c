/* SPDX-License-Identifier: Apache-2.0 */
#include "util/iplimit.h"

#include <limits.h>
#include <sched.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#include "util/hash.h"

/* An address as two words (IPv4 in the first), and its count: every field
 * is read with atomic loads, so a reader racing the table's one writer
 * sees torn slots only inside a window the sequence number exposes. */
typedef struct slot {
    uint64_t w0, w1;
    uint32_t count;         /* 0: free */
    uint32_t alen;
} slot;

typedef struct table {
    uint32_t seq;           /* odd while its writer changes it */
    uint32_t pad;
    slot slots[];
} table;

struct xr_iplimit {
    size_t map_len, table_len;
    size_t mask;            /* slots per table - 1 */
    unsigned workers;
    char *base;             /* the shared tables, one per worker */
};

#define LOAD(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)
#define READ_TRIES 64

/* An address as the slots hold it, and where its probe starts: made once
 * per call, whatever the number of tables it is looked up in. */
typedef struct ipkey {
    uint64_t w0, w1;
    uint32_t alen;
    size_t home;
} ipkey;

static table *table_of(const xr_iplimit *l, unsigned worker)
{
    return (table *)(void *)(l->base + (size_t)(worker < l->workers ? worker : 0) * l->table_len);
}

static size_t home(const xr_iplimit *l, uint64_t w0, uint64_t w1, uint32_t alen)
{
    uint64_t k[3] = {w0, w1, alen};
    return (size_t)xr_hash(k, sizeof k) & l->mask;
}

static ipkey key_of(const xr_iplimit *l, const void *addr, size_t alen)
{
    uint8_t b[16] = {0};
    ipkey k;
    k.alen = (uint32_t)(alen > 16 ? 16 : alen);
    memcpy(b, addr, k.alen);
    memcpy(&k.w0, b, 8);
    memcpy(&k.w1, b + 8, 8);
    k.home = home(l, k.w0, k.w1, k.alen);
    return k;
}

xr_iplimit *xr_iplimit_new(size_t sockets, unsigned workers)
{
    size_t n = 64;
    /* At most half full: probes stay short. */
    while (n < 2 * sockets && n < ((size_t)1 << 24))
        n <<= 1;
    if (workers == 0)
        workers = 1;
    /* The key of the hash is made now, before any fork: every worker
     * must place an address where the others look for it. */
    (void)xr_hash("", 0);
    size_t table_len = (sizeof(table) + n * sizeof(slot) + 63) & ~(size_t)63;
    size_t map_len = sizeof(xr_iplimit) + 64 + table_len * workers;
    void *m = mmap(NULL, map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        return NULL;
    xr_iplimit *l = m;
    l->map_len = map_len;
    l->table_len = table_len;
    l->mask = n - 1;
    l->workers = workers;
    l->base = (char *)m + ((sizeof(xr_iplimit) + 63) & ~(size_t)63);
    return l;
}

void xr_iplimit_free(xr_iplimit *l)
{
    if (l)
        munmap(l, l->map_len);
}

/* The slot holding the address in t, or the free one where it would go. */
static size_t find(const xr_iplimit *l, const table *t, const ipkey *k)
{
    size_t i = k->home;
    for (size_t probes = 0; probes <= l->mask; probes++, i = (i + 1) & l->mask) {
        const slot *s = &t->slots[i];
        if (!LOAD(&s->count) || (LOAD(&s->w0) == k->w0 && LOAD(&s->w1) == k->w1 &&
                                 LOAD(&s->alen) == k->alen))
            return i;
    }
    return SIZE_MAX;
}

/* The count of addr in worker t's table, read without a lock: 1 and *n,
 * or 0 when its writer stayed inside a change for every try (preempted
 * there, or dead there until the supervisor empties its table). */
static int read_count(const xr_iplimit *l, const table *t, const ipkey *k, unsigned *n)
{
    for (int tries = 0; tries < READ_TRIES; tries++) {
        uint32_t s1 = __atomic_load_n(&t->seq, __ATOMIC_ACQUIRE);
        if (s1 & 1) {
            /* The writer is a process that may be off the CPU: give it
             * the CPU rather than spin through every try at once. */
            if (tries >= READ_TRIES / 4)
                sched_yield();
            continue;
        }
        size_t i = find(l, t, k);
        unsigned c = i == SIZE_MAX ? 0 : LOAD(&t->slots[i].count);
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (LOAD(&t->seq) == s1) {
            *n = c;
            return 1;
        }
    }
    return 0;
}

/* Sockets from k over every table; UINT_MAX when one could not be read. */
static unsigned count(const xr_iplimit *l, const ipkey *k)
{
    unsigned n = 0;
    for (unsigned w = 0; w < l->workers; w++) {
        unsigned c;
        if (!read_count(l, table_of(l, w), k, &c))
            return UINT_MAX;
        n += c;
    }
    return n;
}

unsigned xr_iplimit_count(const xr_iplimit *l, const void *addr, size_t alen)
{
    ipkey k = key_of(l, addr, alen);
    return count(l, &k);
}

static void write_begin(table *t)
{
    STORE(&t->seq, t->seq + 1);
    __atomic_thread_fence(__ATOMIC_RELEASE);
}

static void write_end(table *t)
{
    __atomic_store_n(&t->seq, t->seq + 1, __ATOMIC_RELEASE);
}

/* One more in worker's own table: 0 when its every slot is taken. */
static int add(xr_iplimit *l, table *t, const ipkey *k)
{
    size_t i = find(l, t, k);
    if (i == SIZE_MAX)
        return 0;   /* more addresses than sockets allowed */
    slot *s = &t->slots[i];
    write_begin(t);
    if (!s->count) {
        STORE(&s->w0, k->w0);
        STORE(&s->w1, k->w1);
        STORE(&s->alen, k->alen);
    }
    STORE(&s->count, s->count + 1);
    write_end(t);
    return 1;
}

/* One fewer in t: the slot empties with its last socket. */
static void drop(xr_iplimit *l, table *t, const ipkey *k)
{
    size_t i = find(l, t, k);
    if (i == SIZE_MAX || !t->slots[i].count)
        return;
    write_begin(t);
    uint32_t left = t->slots[i].count - 1;
    STORE(&t->slots[i].count, left);
    if (left == 0) {
        /* Linear probing's deletion: later slots of the same run move back
         * so that no search stops early at the hole. */
        size_t hole = i, j = i;
        for (;;) {
            j = (j + 1) & l->mask;
            slot *s = &t->slots[j];
            if (!s->count)
                break;
            size_t h = home(l, s->w0, s->w1, s->alen);
            /* s may move to the hole when its home is not in (hole, j]. */
            if (((j - h) & l->mask) >= ((j - hole) & l->mask)) {
                slot *d = &t->slots[hole];
                STORE(&d->w0, s->w0);
                STORE(&d->w1, s->w1);
                STORE(&d->alen, s->alen);
                STORE(&d->count, s->count);
                STORE(&s->count, 0);
                hole = j;
            }
        }
    }
    write_end(t);
}

int xr_iplimit_take(xr_iplimit *l, unsigned worker, const void *addr, size_t alen,
                    unsigned max)
{
    ipkey k = key_of(l, addr, alen);
    table *t = table_of(l, worker);
    /* Count first, then look: of two workers taking the same address at
     * once, each sees the other's socket (the fence orders every table's
     * count after the own one), so the server never holds more than max.
     * Both may refuse at the edge; a client retries, a flood cannot pass. */
    if (!add(l, t, &k))
        return 0;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    unsigned n = count(l, &k);
    if (n != UINT_MAX && n <= max)
        return 1;
    drop(l, t, &k);
    return 0;
}

void xr_iplimit_put(xr_iplimit *l, unsigned worker, const void *addr, size_t alen)
{
    ipkey k = key_of(l, addr, alen);
    drop(l, table_of(l, worker), &k);
}

void xr_iplimit_reset(xr_iplimit *l, unsigned worker)
{
    if (worker >= l->workers)
        return;
    table *t = table_of(l, worker);
    /* Its writer may have died inside a change (seq odd): the table ends
     * even whatever its sequence was. */
    uint32_t s = LOAD(&t->seq) | 1;
    STORE(&t->seq, s);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    memset(t->slots, 0, (l->mask + 1) * sizeof(slot));
    __atomic_store_n(&t->seq, s + 1, __ATOMIC_RELEASE);
}
