/* SPDX-License-Identifier: Apache-2.0 */
/* The "[user]:password@" part of a redis:// or redis-cluster:// URL, and
 * what else both modules need alike. */
#ifndef XR_REDIS_USERINFO_H
#define XR_REDIS_USERINFO_H

#include <stddef.h>

/* The credentials between p and at (the '@'): "user:password", ":password"
 * or "password" (no user), copied NUL-terminated into user and password
 * (zeroed by the caller). -1 when either does not fit. */
int redis_userinfo(const char *p, const char *at, char *user, size_t ucap, char *password,
                   size_t pcap);

/* AUTH [user] password as an argument vector: its length, or 0 when
 * there is no password (no AUTH to send). */
int redis_auth_argv(const char *user, const char *password, const char *argv[3], size_t argl[3]);

/* This node's presence id into out: 32 hex digits, random, new at every
 * start (its share of each room in Redis is filed under it). */
void redis_node_id(char out[33]);

#endif
