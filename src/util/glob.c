/* SPDX-License-Identifier: Apache-2.0 */
#include "util/glob.h"

int xr_glob_match(const char *pat, size_t plen, const char *name, size_t len)
{
    size_t p = 0, n = 0;
    /* Where the last star was, and the name byte it was last tried to end
     * before: on a mismatch the star takes one byte more. Earlier stars
     * never need to take more than they did (the last one can absorb it). */
    size_t star = (size_t)-1, mark = 0;
    while (n < len) {
        if (p < plen && pat[p] == '*') {
            star = p++;
            mark = n;
        } else if (p < plen && pat[p] == name[n]) {
            p++;
            n++;
        } else if (star != (size_t)-1) {
            p = star + 1;
            n = ++mark;
        } else {
            return 0;
        }
    }
    while (p < plen && pat[p] == '*')
        p++;
    return p == plen;
}
