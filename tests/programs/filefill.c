// Writes argv[2] bytes to the file argv[1] in 64 KiB chunks; reports how far
// it got and why it stopped (the file-size limit test).
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char chunk[65536];

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: filefill <file> <bytes>\n");
        return 2;
    }
    long long want = atoll(argv[2]), done = 0;
    memset(chunk, 'x', sizeof chunk);
    int fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        printf("open failed: %s\n", strerror(errno));
        return 1;
    }
    while (done < want) {
        ssize_t n = write(fd, chunk, sizeof chunk);
        if (n < 0) {
            printf("wrote %lld\nfailed: %s\n", done, strerror(errno));
            return 1;
        }
        done += n;
    }
    printf("wrote %lld\n", done);
    return 0;
}
