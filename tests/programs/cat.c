/* cat: copy stdin to stdout with a plain read/write loop (4096-byte buffer).
 * Exits 1 with a message on stderr if a read or write fails. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(void) {
    char buf[4096];
    ssize_t n;

    while ((n = read(0, buf, sizeof buf)) > 0) {
        char *p = buf;
        while (n > 0) {
            ssize_t m = write(1, p, (size_t)n);
            if (m < 0) {
                fprintf(stderr, "write error: %s\n", strerror(errno));
                return 1;
            }
            n -= m;
            p += m;
        }
    }
    if (n < 0) {
        fprintf(stderr, "read error: %s\n", strerror(errno));
        return 1;
    }
    return 0;
}
