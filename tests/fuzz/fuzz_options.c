/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer: the parsers of flag values and addresses: --listen specs
 * (HOST:PORT, [v6]:PORT, ws:// / wss://), sizes and durations, and the
 * scheme part of --antenna URLs. Invariants: results stay in their ranges and
 * inside their buffers; a spec that parses re-parses the same. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/server.h"

#define ASSERT(c) do { if (!(c)) abort(); } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    memcpy(s, data, size);
    s[size] = '\0';
    char host[256];
    int port = -1;
    int tls = xr_listen_spec(s, (int)(size & 1), host, sizeof host, &port);
    ASSERT(tls == XR_EINVAL || tls == 0 || tls == 1);
    if (tls >= 0) {
        ASSERT(port >= 0 && port <= 65535);
        ASSERT(strlen(host) < sizeof host);
        char host2[256];
        int port2;
        ASSERT(xr_listen_spec(s, (int)(size & 1), host2, sizeof host2, &port2) == tls);
        ASSERT(port2 == port && strcmp(host, host2) == 0);
    }
    size_t sz;
    if (xr_parse_size(s, &sz) == 0)
        ASSERT(sz <= (UINT64_C(4) << 30));
    unsigned ms;
    if (xr_parse_duration(s, &ms) == 0)
        ASSERT(ms <= 86400000u);
    char scheme[64];
    int r = xr_antenna_scheme(s, scheme, sizeof scheme);
    ASSERT(r >= 0 || r == XR_EINVAL);
    if (r > 0) {
        ASSERT((size_t)r == strlen(scheme) && r < (int)sizeof scheme);
        ASSERT(strncmp(s, scheme, (size_t)r) == 0 && strncmp(s + r, "://", 3) == 0);
    }
    free(s);
    return 0;
}
