/* SPDX-License-Identifier: Apache-2.0 */
/* Antenna loader: finds the module for a URL's scheme and checks its ABI.
 * Every antenna, the built-in choice memory:// included, comes through here. */
#include "protocol/internal.h"

#include <dirent.h>
#include <dlfcn.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

/* Where to look: the explicit option, else $XRAPTOR_ANTENNA_PATH (a colon
 * list, for running uninstalled), else the install directory. */
static const char *search_path(const char *dir)
{
    if (dir && *dir)
        return dir;
    const char *env = getenv("XRAPTOR_ANTENNA_PATH");
    return env && *env ? env : XR_ANTENNA_DIR;
}

/* "memory, redis" from the .so files on the path. */
static void list_modules(const char *path, char *out, size_t outlen)
{
    size_t n = 0;
    out[0] = '\0';
    char *copy = strdup(path), *save = NULL;
    for (char *d = copy ? strtok_r(copy, ":", &save) : NULL; d; d = strtok_r(NULL, ":", &save)) {
        DIR *dh = opendir(d);
        struct dirent *de;
        while (dh && (de = readdir(dh))) {
            size_t l = strlen(de->d_name);
            if (l > 3 && strcmp(de->d_name + l - 3, ".so") == 0 && n + l < outlen)
                n += (size_t)snprintf(out + n, outlen - n, "%s%.*s", n ? ", " : "",
                                      (int)(l - 3), de->d_name);
        }
        if (dh)
            closedir(dh);
    }
    free(copy);
    if (!n)
        snprintf(out, outlen, "none");
}

int xr_antenna_scheme(const char *url, char *out, size_t cap)
{
    const char *sep = strstr(url, "://");
    size_t ul = strlen(url);
    out[0] = '\0';
    if (!sep)
        return ul > 3 && strcmp(url + ul - 3, ".so") == 0 ? 0 : XR_EINVAL;
    size_t sl = (size_t)(sep - url);
    if (sl == 0 || sl >= cap)
        return XR_EINVAL;
    /* RFC 3986: a letter, then letters, digits, '+', '-' (no '.': it would
     * reach outside the module directory as a file name). */
    for (size_t i = 0; i < sl; i++)
        if (!((url[i] >= 'a' && url[i] <= 'z') ||
              (i && ((url[i] >= '0' && url[i] <= '9') || url[i] == '+' || url[i] == '-'))))
            return XR_EINVAL;
    memcpy(out, url, sl);
    out[sl] = '\0';
    return (int)sl;
}

int xr_antenna_open(const char *url, const char *dir, const xr_antenna_ops **ops,
                    void **dl, char *use, size_t uselen, char *err, size_t errlen)
{
    const char *path = search_path(dir);
    char file[1024], scheme[64];
    int sl = xr_antenna_scheme(url, scheme, sizeof scheme);
    if (sl < 0) {
        char have[256];
        list_modules(path, have, sizeof have);
        snprintf(err, errlen, "--antenna: '%s' is not SCHEME://… or a path to a .so "
                 "(installed antennas: %s)", url, have);
        return XR_EUSAGE;
    }
    if (sl == 0) {
        snprintf(file, sizeof file, "%s", url);  /* a module given by path */
    } else {
        /* First directory on the path that has it. */
        file[0] = '\0';
        char *copy = strdup(path), *save = NULL;
        for (char *d = copy ? strtok_r(copy, ":", &save) : NULL; d; d = strtok_r(NULL, ":", &save)) {
            snprintf(file, sizeof file, "%s/%s.so", d, scheme);
            if (access(file, R_OK) == 0)
                break;
            file[0] = '\0';
        }
        free(copy);
        if (!file[0]) {
            char have[256];
            list_modules(path, have, sizeof have);
            /* The list first: a long search path must not cut it off. */
            snprintf(err, errlen, "--antenna: no module for '%s://' (installed antennas: %s; "
                     "looked in %s)", scheme, have, path);
            return XR_EUSAGE;
        }
    }
    void *h = dlopen(file, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        snprintf(err, errlen, "--antenna: cannot load %s: %s", file, dlerror());
        return XR_EUSAGE;
    }
    xr_antenna_entry_fn entry = (xr_antenna_entry_fn)dlsym(h, "xr_antenna_entry");
    const xr_antenna_ops *o = entry ? entry() : NULL;
    if (!o) {
        snprintf(err, errlen, "--antenna: %s is not an xraptor antenna (no xr_antenna_entry)", file);
        dlclose(h);
        return XR_EUSAGE;
    }
    if (o->abi != XR_ANTENNA_ABI) {
        snprintf(err, errlen, "--antenna: %s speaks antenna ABI %d, this xraptor speaks %d: "
                 "rebuild the module against this xraptor", file, o->abi, XR_ANTENNA_ABI);
        dlclose(h);
        return XR_EUSAGE;
    }
    /* Any minor loads; members past the module's size do not exist. */
    if (o->size < offsetof(xr_antenna_ops, describe)) {
        snprintf(err, errlen, "--antenna: %s has a table of %zu bytes, shorter than antenna "
                 "ABI %d.0's: rebuild the module against this xraptor", file, o->size,
                 XR_ANTENNA_ABI);
        dlclose(h);
        return XR_EUSAGE;
    }
    if (scheme[0] && (!o->scheme || strcmp(o->scheme, scheme) != 0)) {
        snprintf(err, errlen, "--antenna: %s serves '%s://', not '%s://'", file,
                 o->scheme ? o->scheme : "?", scheme);
        dlclose(h);
        return XR_EUSAGE;
    }
    const char *missing = !o->create ? "create" : !o->destroy ? "destroy"
                          : !o->subscribe ? "subscribe" : !o->unsubscribe ? "unsubscribe"
                          : !o->publish ? "publish" : !o->is_alive ? "is_alive"
                          : !o->connected ? "connected" : !o->check_url ? "check_url" : NULL;
    if (missing) {
        snprintf(err, errlen, "--antenna: %s leaves the required function %s out", file, missing);
        dlclose(h);
        return XR_EUSAGE;
    }
    /* A module named by its path has no address in the flag: it gets its
     * own scheme with none ("redis://"), i.e. the module's defaults. */
    if (!scheme[0])
        snprintf(use, uselen, "%s://", o->scheme ? o->scheme : "");
    else
        snprintf(use, uselen, "%s", url);
    char uerr[256];
    if (o->check_url(use, uerr, sizeof uerr) < 0) {
        snprintf(err, errlen, "--antenna: %s", uerr);
        dlclose(h);
        return XR_EUSAGE;
    }
    *ops = o;
    *dl = h;
    return XR_OK;
}

/* Under AddressSanitizer a module stays mapped: LeakSanitizer runs at
 * exit and can name (and a suppression can match) only what is still
 * mapped then. */
#if defined(__SANITIZE_ADDRESS__)
#define XR_KEEP_MODULES 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define XR_KEEP_MODULES 1
#endif
#endif

void xr_antenna_close(void *dl)
{
#ifdef XR_KEEP_MODULES
    (void)dl;
#else
    if (dl)
        dlclose(dl);
#endif
}
