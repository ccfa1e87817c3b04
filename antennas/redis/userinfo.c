/* SPDX-License-Identifier: Apache-2.0 */
#include "userinfo.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int redis_userinfo(const char *p, const char *at, char *user, size_t ucap, char *password,
                   size_t pcap)
{
    const char *colon = memchr(p, ':', (size_t)(at - p));
    const char *pw = colon ? colon + 1 : p;
    size_t ul = colon ? (size_t)(colon - p) : 0, pl = (size_t)(at - pw);
    if (ul >= ucap || pl >= pcap)
        return -1;
    memcpy(user, p, ul);
    memcpy(password, pw, pl);
    return 0;
}

int redis_auth_argv(const char *user, const char *password, const char *argv[3], size_t argl[3])
{
    if (!password[0])
        return 0;
    int argc = 0;
    argv[argc] = "AUTH";
    argl[argc++] = 4;
    if (user[0]) {
        argv[argc] = user;
        argl[argc++] = strlen(user);
    }
    argv[argc] = password;
    argl[argc++] = strlen(password);
    return argc;
}

void redis_node_id(char out[33])
{
    unsigned char id[16] = {0};
    if (getentropy(id, sizeof id) != 0) {
        unsigned long long t = (unsigned long long)time(NULL) ^ (unsigned long long)getpid() << 20;
        memcpy(id, &t, sizeof t);
    }
    for (size_t k = 0; k < sizeof id; k++)
        snprintf(out + 2 * k, 3, "%02x", id[k]);
}

int redis_room_keys_of(const char *room, size_t rlen, int tagged, redis_room_keys *rk)
{
    static const char *const fix[REDIS_ROOM_KEYS][2] = {
        {"xr.p.", ".u"}, {"xr.p.", ".i"}, {"xr.p.", ".n"}, {"xr.pn.", ""}, {"xr.pz.", ""},
    };
    for (int k = 0; k < REDIS_ROOM_KEYS; k++) {
        size_t a = strlen(fix[k][0]), b = strlen(fix[k][1]), t = tagged ? 1 : 0;
        if (a + t + rlen + t + b > sizeof rk->k[k])
            return -1;
        char *o = rk->k[k];
        memcpy(o, fix[k][0], a);
        o += a;
        if (tagged)
            *o++ = '{';
        memcpy(o, room, rlen);
        o += rlen;
        if (tagged)
            *o++ = '}';
        memcpy(o, fix[k][1], b);
        rk->l[k] = a + 2 * t + rlen + b;
    }
    return 0;
}
