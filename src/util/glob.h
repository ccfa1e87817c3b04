/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Name patterns, as token grants (and per-pattern settings) write them:
 * '*' stands for any run of bytes, '.' and '/' included; every other byte
 * stands for itself. "chat.*" matches "chat.a" and "chat." but not "chat";
 * "*" matches every name. No escapes, no classes: a name policy that
 * forbids nothing but control characters leaves no other byte to reserve.
 */
#ifndef XR_UTIL_GLOB_H
#define XR_UTIL_GLOB_H

#include <stddef.h>

/* 1 when name (len bytes) matches pat (plen bytes), else 0. Time is
 * O(plen x len) at worst (one star remembered, not a backtracking tree). */
int xr_glob_match(const char *pat, size_t plen, const char *name, size_t len);

#endif
