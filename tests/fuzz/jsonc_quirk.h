/* SPDX-License-Identifier: Apache-2.0 */
/*
 * json-c 0.16 (Debian 12), the fuzzers' reference reader, decodes a
 * surrogate pair whose code point's low 16 bits look like a surrogate
 * (U+xD800..U+xDFFF, e.g. "\ud837\ude00" = U+1DE00) as U+FFFD (json-c
 * pull request #893). Python reads them right, and so do we: the fuzzers
 * compare json-c's string with ours seen through that bug.
 */
#ifndef XR_JSONC_QUIRK_H
#define XR_JSONC_QUIRK_H

#include <stdlib.h>
#include <string.h>

/* Whether json-c's bytes equal ours (s, n) with every such code point
 * replaced by U+FFFD. */
static int jsonc_same(const char *jc, size_t jclen, const char *s, size_t n)
{
    if (jclen == n && memcmp(jc, s, n) == 0)
        return 1;
    char *v = malloc(n + 1);
    size_t o = 0;
    if (!v)
        return 0;
    for (size_t i = 0; i < n;) {
        const unsigned char *p = (const unsigned char *)s + i;
        if (p[0] >= 0xF0 && i + 4 <= n) {
            unsigned cp = (unsigned)(p[0] & 7) << 18 | (unsigned)(p[1] & 63) << 12 |
                          (unsigned)(p[2] & 63) << 6 | (p[3] & 63);
            if ((cp & 0xF800) == 0xD800) {
                memcpy(v + o, "\xef\xbf\xbd", 3);
                o += 3;
                i += 4;
                continue;
            }
        }
        v[o++] = s[i++];
    }
    int same = o == jclen && memcmp(v, jc, o) == 0;
    free(v);
    return same;
}

#endif
