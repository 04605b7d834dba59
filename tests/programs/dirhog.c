// Opens the directory argv[1] again and again, keeping every handle, until
// open fails; prints how many succeeded and why the next failed (the
// supervisor-descriptor test: each open directory is a handle the broker holds).
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: dirhog <dir>\n");
        return 2;
    }
    int count = 0;
    for (;;) {
        int fd = open(argv[1], O_RDONLY | O_DIRECTORY);
        if (fd < 0) {
            printf("opened %d\nfailed: %s\n", count, strerror(errno));
            return 0;
        }
        if (++count > 100000) {
            printf("no limit\n");
            return 1;
        }
    }
}
