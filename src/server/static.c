/* SPDX-License-Identifier: Apache-2.0 */
/* Static files on the WebSocket port (the chat page, xraptor.js): GET and
 * HEAD of plain files under the configured directories, nothing clever. */
#include "server/server.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>


#define XR_STATIC_MAX (16u << 20)

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

/* Only plain names: no "..", no hidden files, no escapes, no backslashes. */
static int safe_path(const char *p, size_t n)
{
    if (n == 0 || p[0] != '/' || n > 512)
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

int xr_static_find(const xr_server *srv, const char *path, size_t len, xr_buf *body,
                   const char **ctype)
{
    if (!srv->opts.n_static_dirs || !safe_path(path, len))
        return -1;
    char rel[520];
    memcpy(rel, path, len);
    rel[len] = '\0';
    if (rel[len - 1] == '/')
        strcat(rel, "index.html");
    for (size_t k = 0; k < srv->opts.n_static_dirs; k++) {
        char file[1100];
        snprintf(file, sizeof file, "%s%s", srv->opts.static_dirs[k], rel);
        int fd = open(file, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        struct stat st;
        if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size <= XR_STATIC_MAX &&
            xr_buf_reserve(body, (size_t)st.st_size) == 0) {
            size_t want = (size_t)st.st_size, got = 0;
            ssize_t n = 1;
            while (got < want && n > 0)
                if ((n = read(fd, body->p + body->len + got, want - got)) > 0)
                    got += (size_t)n;
            if (got == want) {
                close(fd);
                body->len += want;
                *ctype = content_type(rel);
                return 0;
            }
        }
        close(fd);
    }
    return -1;
}
