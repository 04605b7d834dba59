/* bench_copy64k: the tutorial's copy program (demo.c) with a 64 KiB buffer.
 *
 * usage: bench_copy64k <from> <to>
 *
 * Used by scripts/bench ("copy_64k"): the same program as demo.c, so the
 * only difference from the "copy" workload is the number of host calls
 * (1,024 read/write pairs for 64 MiB instead of 65,536 with BUFSIZ). The
 * buffer is static: 64 KiB would fill wasm-ld's default 64 KiB stack.
 */
#define BUF_SIZE (64 * 1024)
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <unistd.h>
#include <fcntl.h>
#include <errno.h>

int main(int argc, char **argv) {
    ssize_t n, m;
    static char buf[BUF_SIZE];

    if (argc != 3) {
        fprintf(stderr, "usage: %s <from> <to>\n", argv[0]);
        exit(1);
    }

    int in = open(argv[1], O_RDONLY);
    if (in < 0) {
        fprintf(stderr, "error opening input %s: %s\n", argv[1], strerror(errno));
        exit(1);
    }

    int out = open(argv[2], O_WRONLY | O_CREAT, 0660);
    if (out < 0) {
        fprintf(stderr, "error opening output %s: %s\n", argv[2], strerror(errno));
        exit(1);
    }

    while ((n = read(in, buf, BUF_SIZE)) > 0) {
        char *ptr = buf;
        while (n > 0) {
            m = write(out, ptr, (size_t)n);
            if (m < 0) {
                fprintf(stderr, "write error: %s\n", strerror(errno));
                exit(1);
            }
            n -= m;
            ptr += m;
        }
    }

    if (n < 0) {
        fprintf(stderr, "read error: %s\n", strerror(errno));
        exit(1);
    }

    return EXIT_SUCCESS;
}
