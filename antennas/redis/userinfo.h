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

/* A room's presence keys: its users "xr.p.<R>.u", their info ".i", its
 * connection counter ".n", and (redis-cluster://) each node's share
 * "xr.pn.<R>" and their expiries "xr.pz.<R>". tagged puts R inside {} so
 * that all of a room's keys hash to its slot. */
#define REDIS_ROOM_KEYS 5
typedef struct redis_room_keys {
    char k[REDIS_ROOM_KEYS][1100];
    size_t l[REDIS_ROOM_KEYS];
} redis_room_keys;
/* 0, or -1 when the room's name does not fit. */
int redis_room_keys_of(const char *room, size_t rlen, int tagged, redis_room_keys *rk);

#endif
