/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A stream position as a client sends it back, {"offset": N, "epoch": "E"}
 * (position.c). Pure: the one reading of "since" the protocol trusts, so
 * that its fuzz target (tests/fuzz/fuzz_position.c) reads what the server
 * reads.
 */
#ifndef XR_CODEC_POSITION_H
#define XR_CODEC_POSITION_H

#include <stddef.h>

#define XR_POSITION_EPOCH_MAX 64                        /* bytes */
#define XR_POSITION_OFFSET_MAX 9007199254740991ULL      /* 2^53 - 1: exact in every JSON reader */

/* Reads json (len bytes, one JSON object): 0 with *offset, epoch
 * (UTF-8, NUL-terminated; it may hold a NUL of its own, *elen says how long) and
 * *elen; or XR_EINVAL with *why (a static sentence naming the member).
 * XR_ENOMEM when memory ran out. Other members are ignored; a repeated
 * one counts by its last value, as Python's json reads it. */
int xr_position_parse(const char *json, size_t len, unsigned long long *offset,
                      char epoch[XR_POSITION_EPOCH_MAX + 1], size_t *elen, const char **why);

#endif
