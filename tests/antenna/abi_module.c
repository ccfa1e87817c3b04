/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Antenna modules the loader must refuse, built from one source:
 * -DWRONG_ABI: a table of another ABI version (as a module built against
 * another xraptor would carry); -DMISSING_OPS: a required function left
 * out. Used by test_cli.py through --antenna /path/to/module.so.
 */
#include <stddef.h>

#include <xraptor/antenna.h>

static void *create(struct event_base *base, const char *url, const xr_antenna_host *host,
                    char *err, size_t errlen)
{
    (void)base, (void)url, (void)host, (void)err, (void)errlen;
    return NULL;
}

static void destroy(void *self) { (void)self; }

static int channel_op(void *self, const char *channel, size_t len)
{
    (void)self, (void)channel, (void)len;
    return 0;
}

static int publish(void *self, const char *channel, size_t clen, const char *msg, size_t mlen)
{
    (void)self, (void)channel, (void)clen, (void)msg, (void)mlen;
    return 0;
}

#ifndef MISSING_OPS
static int is_alive(void *self, const char *channel, size_t len, xr_antenna_alive_cb done,
                    void *arg)
{
    (void)self, (void)channel, (void)len, (void)done, (void)arg;
    return XR_EANTENNA;
}
#endif

static int connected(void *self) { (void)self; return 0; }

static int check_url(const char *url, char *err, size_t errlen)
{
    (void)url, (void)err, (void)errlen;
    return 0;
}

#ifdef WRONG_ABI
#define ABI (XR_ANTENNA_ABI + 1)
#else
#define ABI XR_ANTENNA_ABI
#endif

static const xr_antenna_ops ops = {
    .abi = ABI,
    .minor = XR_ANTENNA_ABI_MINOR,
    .size = sizeof(xr_antenna_ops),
    .scheme = "testabi",
    .description = "a module the loader refuses (tests only)",
    .create = create,
    .destroy = destroy,
    .subscribe = channel_op,
    .unsubscribe = channel_op,
    .publish = publish,
#ifndef MISSING_OPS
    .is_alive = is_alive,
#endif
    .connected = connected,
    .check_url = check_url,
};

const xr_antenna_ops *xr_antenna_entry(void)
{
    return &ops;
}
