/* SPDX-License-Identifier: Apache-2.0 */
/* Runs a fuzz target's entry point over files, without libFuzzer: make
 * check replays the committed corpora with every build (gcc included), so
 * an input that once found a bug keeps guarding it. TAP: one line a file. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int main(int argc, char **argv)
{
    for (int k = 1; k < argc; k++) {
        FILE *f = fopen(argv[k], "rb");
        if (!f) {
            printf("not ok %d - %s: cannot open\n", k, argv[k]);
            return 1;
        }
        uint8_t *buf = NULL;
        size_t len = 0, cap = 0, n;
        do {
            if (len == cap) {
                cap = cap ? cap * 2 : 4096;
                buf = realloc(buf, cap);
            }
            n = fread(buf + len, 1, cap - len, f);
            len += n;
        } while (n > 0);
        fclose(f);
        /* The entry point aborts on a broken invariant. */
        LLVMFuzzerTestOneInput(buf, len);
        free(buf);
        printf("ok %d - %s\n", k, argv[k]);
    }
    printf("1..%d\n", argc - 1);
    return 0;
}
