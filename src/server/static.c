/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Static files on the WebSocket port (the chat page, xraptor.js): GET and
 * HEAD of plain files under the configured directories, nothing clever.
 *
 * A file's bytes are read once into a shared block and every reply queues
 * that block by reference: a hundred clients that never read a 16 MiB file
 * hold one copy, not a hundred. Blocks are cached by path while the file
 * is unchanged (same inode, size and mtime); the cache is bounded, and a
 * file bigger than --max-output-buffer is not served at all, so what one
 * connection can pin stays within the limit every connection has.
 */
#include "server/server.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/shared.h"

typedef struct cached {
    xr_shared *body;
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
} cached;

static const char *content_type(const char *path)
{
    static const struct { const char *ext, *type; } types[] = {
        {".html", "text/html; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".mjs", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".json", "application/json"},
        {".svg", "image/svg+xml"},
        {".png", "image/png"},
        {".ico", "image/x-icon"},
        {".txt", "text/plain; charset=utf-8"},
    };
    const char *dot = strrchr(path, '.');
    for (size_t i = 0; dot && i < sizeof types / sizeof types[0]; i++)
        if (strcmp(dot, types[i].ext) == 0)
            return types[i].type;
    return "application/octet-stream";
}

/* Only plain names: no "..", no hidden files, no escapes, no backslashes;
 * at most XR_STATIC_PATH bytes. */
int xr_static_path_ok(const char *p, size_t n)
{
    if (n == 0 || p[0] != '/' || n > XR_STATIC_PATH)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '/' || c == '.' || c == '-' || c == '_'))
            return 0;
        if (c == '.' && p[i - 1] == '/')
            return 0;
    }
    return 1;
}

static void cache_drop(xr_server *srv)
{
    size_t it;
    for (xr_map_entry *e = xr_map_first(&srv->static_cache, &it); e;
         e = xr_map_next(&srv->static_cache, e, &it)) {
        cached *c = e->value;
        xr_shared_unref(c->body);
        free(c);
    }
    xr_map_clear(&srv->static_cache);
    srv->static_cached = 0;
}

void xr_static_free(xr_server *srv)
{
    cache_drop(srv);
}

static int same_file(const cached *c, const struct stat *st)
{
    return c->dev == st->st_dev && c->ino == st->st_ino && c->size == st->st_size &&
           c->mtime.tv_sec == st->st_mtim.tv_sec && c->mtime.tv_nsec == st->st_mtim.tv_nsec;
}

/* The file's bytes as a shared block (one reference for the caller),
 * from the cache while the file is unchanged; NULL when unreadable. */
static xr_shared *file_body(xr_server *srv, const char *key, size_t klen, int fd,
                            const struct stat *st)
{
    cached *c = xr_map_get(&srv->static_cache, key, klen);
    if (c && same_file(c, st))
        return xr_shared_ref(c->body);
    size_t want = (size_t)st->st_size, got = 0;
    xr_shared *body = xr_shared_new(NULL, want);
    if (!body)
        return NULL;
    ssize_t n = 1;
    while (got < want && n > 0)
        if ((n = read(fd, body->data + got, want - got)) > 0)
            got += (size_t)n;
    if (got != want) {
        xr_shared_unref(body);
        return NULL;
    }
    if (c) {
        srv->static_cached -= c->body->len;
        xr_shared_unref(c->body);
        xr_map_del(&srv->static_cache, key, klen);
        free(c);
    }
    /* Bounded: past the budget the cache starts over (blocks still queued
     * for clients live on until sent). */
    if (srv->static_cached + want > XR_STATIC_CACHE ||
        srv->static_cache.count >= XR_STATIC_CACHE_FILES)
        cache_drop(srv);
    if ((c = calloc(1, sizeof *c))) {
        *c = (cached){xr_shared_ref(body), st->st_dev, st->st_ino, st->st_size, st->st_mtim};
        if (xr_map_put(&srv->static_cache, key, klen, c)) {
            srv->static_cached += want;
        } else {
            xr_shared_unref(body);
            free(c);
        }
    }
    return body;
}

int xr_static_find(xr_server *srv, const char *path, size_t len, xr_shared **body,
                   const char **ctype)
{
    if (!srv->opts.n_static_dirs || !xr_static_path_ok(path, len))
        return XR_ENOENT;
    /* The path, and index.html after a final '/': room for both. */
    char rel[XR_STATIC_PATH + sizeof "index.html"];
    memcpy(rel, path, len);
    rel[len] = '\0';
    if (rel[len - 1] == '/')
        memcpy(rel + len, "index.html", sizeof "index.html");
    size_t max = srv->opts.max_output_buffer < XR_STATIC_MAX ? srv->opts.max_output_buffer
                                                             : XR_STATIC_MAX;
    for (size_t k = 0; k < srv->opts.n_static_dirs; k++) {
        char file[PATH_MAX];
        int n = snprintf(file, sizeof file, "%s%s", srv->opts.static_dirs[k], rel);
        if (n < 0 || (size_t)n >= sizeof file)
            continue;   /* a cut name would be another file */
        int fd = open(file, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
        if (fd < 0)
            continue;
        struct stat st;
        xr_shared *b = NULL;
        if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (size_t)st.st_size <= max)
            b = file_body(srv, file, (size_t)n, fd, &st);
        close(fd);
        if (b) {
            *body = b;
            *ctype = content_type(rel);
            return 0;
        }
    }
    return XR_ENOENT;
}
