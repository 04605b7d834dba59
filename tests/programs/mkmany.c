// Creates files argv[1]/f0, f1, ... (up to argv[2] of them) until creating
// fails; prints how many it made and why it stopped (the `files` limit test).
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: mkmany <dir> <count>\n");
        return 2;
    }
    long want = atol(argv[2]);
    char path[4096];
    for (long i = 0; i < want; i++) {
        snprintf(path, sizeof path, "%s/f%ld", argv[1], i);
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
        if (fd < 0) {
            printf("created %ld\nfailed: %s\n", i, strerror(errno));
            return 0;
        }
        close(fd);
    }
    printf("created %ld\n", want);
    return 0;
}
