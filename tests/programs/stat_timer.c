/* stat_timer DIR N: stat N entries DIR/f0, DIR/f1, ... and print the time it took, in
   microseconds (the victim of the fairness test: what a neighbour costs it). */
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: stat_timer DIR N\n");
        return 2;
    }
    int n = atoi(argv[2]);
    char path[4096];
    struct stat st;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s/f%d", argv[1], i);
        if (stat(path, &st) != 0) {
            perror(path);
            return 1;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("%ld\n", (long)((b.tv_sec - a.tv_sec) * 1000000L + (b.tv_nsec - a.tv_nsec) / 1000));
    return 0;
}
