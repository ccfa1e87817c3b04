/* SPDX-License-Identifier: Apache-2.0 */
#include "codec/position.h"

#include <string.h>

#include "codec/request.h"
#include "codec/utf8.h"
#include "xraptor.h"

int xr_position_parse(const char *json, size_t len, unsigned long long *offset,
                      char epoch[XR_POSITION_EPOCH_MAX + 1], size_t *elen, const char **why)
{
    xr_json_fields f;
    memset(&f, 0, sizeof f);
    xr_json_fields_reset(&f, json, len);
    int state, rc = XR_EINVAL;
    xr_json_member *o = xr_json_fields_get(&f, "offset", 6, &state);
    xr_json_member *e = o ? xr_json_fields_get(&f, "epoch", 5, &state) : NULL;
    long long v;
    const char *s;
    size_t sl;
    if (state == XR_ENOMEM) {
        *why = "out of memory";
        rc = XR_ENOMEM;
    } else if (state != 1) {
        *why = "since must be an object {\"offset\": N, \"epoch\": \"E\"}";
    } else if (!o || xr_json_member_int(&f, o, &v) < 0 || v < 0 ||
               (unsigned long long)v > XR_POSITION_OFFSET_MAX) {
        *why = "since.offset must be an integer from 0 to 2^53-1";
    } else if (!e || xr_json_member_str(&f, e, &s, &sl) < 0 || sl == 0 ||
               sl > XR_POSITION_EPOCH_MAX || !xr_utf8_valid((const uint8_t *)s, sl)) {
        /* UTF-8, as every epoch we hand out is: what a client sends back
         * then reads and writes the same everywhere. */
        *why = "since.epoch must be a string of 1 to 64 bytes of UTF-8";
    } else {
        *offset = (unsigned long long)v;
        memcpy(epoch, s, sl);
        epoch[sl] = '\0';
        *elen = sl;
        rc = 0;
    }
    xr_json_fields_free(&f);
    return rc;
}
