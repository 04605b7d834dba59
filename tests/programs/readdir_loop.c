/* readdir_loop DIR SECONDS: ask for DIR's first entries again and again for SECONDS
   (fd_readdir from cookie 0, a small buffer); prints how many calls it made. The
   abusive neighbour of the fairness test: each call must cost what it returns, not
   the whole directory. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <wasi/api.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: readdir_loop DIR SECONDS\n");
        return 2;
    }
    int fd = open(argv[1], O_RDONLY | O_DIRECTORY);
    if (fd < 0) {
        perror(argv[1]);
        return 1;
    }
    double end = now() + atof(argv[2]);
    long calls = 0;
    static uint8_t buf[256];
    while (now() < end) {
        __wasi_size_t used;
        if (__wasi_fd_readdir(fd, buf, sizeof buf, 0, &used) != 0) {
            fprintf(stderr, "fd_readdir failed\n");
            return 1;
        }
        calls++;
    }
    printf("%ld\n", calls);
    return 0;
}
