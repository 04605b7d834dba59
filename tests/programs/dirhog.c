// Opens the directory argv[1] again and again, keeping every handle, until
// open fails; prints how many succeeded and why the next failed, then holds
// them all for a second (the supervisor-descriptor test: each open directory
// is a handle the broker holds, while the jobs beside it start).
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

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
            fflush(stdout);
            sleep(1);
            return 0;
        }
        if (++count > 100000) {
            printf("no limit\n");
            return 1;
        }
    }
}
