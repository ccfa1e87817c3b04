/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer: the reading of a stream position, {"offset": N, "epoch": "E"}
 * (a SUB's header "since"). Invariants: a refusal names its reason; an
 * accepted position is one json-c (strict) reads as an object whose last
 * "offset" is an integer of the same value, at most 2^53-1, and whose last
 * "epoch" is a string of 1 to 64 bytes of UTF-8, the same bytes; written back with
 * our JSON writer it reads back the same. And the other way: built from
 * the input's bytes (an offset and an epoch), a position is accepted
 * exactly when it is in range. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "codec/jsonf.h"
#include "codec/position.h"
#include "jsonc_quirk.h"
#include "xraptor.h"

#define ASSERT(c) do { if (!(c)) abort(); } while (0)

static int parse(const char *json, size_t len, unsigned long long *off, char *epoch,
                 size_t *elen)
{
    const char *why = NULL;
    int rc = xr_position_parse(json, len, off, epoch, elen, &why);
    ASSERT(rc == 0 || (rc == XR_EINVAL && why && why[0]) || rc == XR_ENOMEM);
    if (rc == 0)
        ASSERT(*elen >= 1 && *elen <= XR_POSITION_EPOCH_MAX && epoch[*elen] == '\0' &&
               *off <= XR_POSITION_OFFSET_MAX);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned long long off, off2;
    char epoch[XR_POSITION_EPOCH_MAX + 1], epoch2[XR_POSITION_EPOCH_MAX + 1];
    size_t elen, elen2;
    if (parse((const char *)data, size, &off, epoch, &elen) == 0) {
        json_tokener *strict = json_tokener_new_ex(128);
        json_tokener_set_flags(strict, JSON_TOKENER_STRICT);
        json_object *ref = size <= 0x7fffffff
                           ? json_tokener_parse_ex(strict, (const char *)data, (int)size) : NULL;
        json_object *o, *e;
        ASSERT(ref && json_object_is_type(ref, json_type_object));
        ASSERT(json_object_object_get_ex(ref, "offset", &o) && json_object_is_type(o, json_type_int));
        ASSERT((unsigned long long)json_object_get_int64(o) == off);
        ASSERT(json_object_object_get_ex(ref, "epoch", &e) && json_object_is_type(e, json_type_string));
        if (!jsonc_quirky(data, size))
            ASSERT((size_t)json_object_get_string_len(e) == elen &&
                   memcmp(json_object_get_string(e), epoch, elen) == 0);
        json_object_put(ref);
        json_tokener_free(strict);
        /* Written back, the same position. */
        char out[512];
        size_t olen;
        ASSERT(xr_jsonf(out, sizeof out, &olen, "{\"epoch\": %.*Q, \"offset\": %llu}", (int)elen,
                        epoch, off) == 0 && olen < sizeof out);
        ASSERT(parse(out, olen, &off2, epoch2, &elen2) == 0);
        ASSERT(off2 == off && elen2 == elen && memcmp(epoch2, epoch, elen) == 0);
    }
    /* Built from the bytes: 8 for the offset (the top bits set about half
     * the time, so past 2^53-1 as often as not), the rest the epoch, made
     * UTF-8 by the writer; in range exactly when accepted. */
    if (size >= 8) {
        unsigned long long v = 0;
        for (int k = 0; k < 8; k++)
            v = v << 8 | data[k];
        v >>= data[0] & 1 ? 10 : 0;
        char out[4096];
        size_t olen, want;
        int ep = (int)(size - 8 > 1000 ? 1000 : size - 8);
        ASSERT(xr_jsonf(NULL, 0, &want, "%.*Q", ep, (const char *)data + 8) == 0);
        if (xr_jsonf(out, sizeof out, &olen, "{\"offset\": %llu, \"epoch\": %.*Q}", v, ep,
                     (const char *)data + 8) == 0 && olen < sizeof out) {
            /* The epoch as it reads back: the quoted text minus its quotes
             * and escapes, counted by json-c. */
            json_object *ref = json_tokener_parse(out), *e;
            ASSERT(ref && json_object_object_get_ex(ref, "epoch", &e));
            size_t len = (size_t)json_object_get_string_len(e);
            int in_range = v <= XR_POSITION_OFFSET_MAX && len >= 1 && len <= XR_POSITION_EPOCH_MAX;
            int rc = parse(out, olen, &off2, epoch2, &elen2);
            ASSERT((rc == 0) == in_range || rc == XR_ENOMEM);
            if (rc == 0)
                ASSERT(off2 == v && elen2 == len);
            json_object_put(ref);
        }
    }
    return 0;
}
