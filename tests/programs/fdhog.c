// Opens argv[1] again and again until open fails; prints how many succeeded
// and why the next one failed (the open-files limit test).
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: fdhog <file>\n");
        return 2;
    }
    int count = 0;
    for (;;) {
        int fd = open(argv[1], O_RDONLY);
        if (fd < 0) {
            printf("opened %d\nfailed: %s\n", count, strerror(errno));
            return 0;
        }
        count++;
        if (count > 100000) {
            printf("no limit\n");
            return 1;
        }
    }
}
