/* clocks: check the clock and random calls. On a working runtime stdout is:
 *   realtime ok
 *   monotonic ok
 *   random ok
 * A failing check prints "<name> FAIL" (with the errno text when there is one)
 * and the program exits 1 after running all three checks. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define JAN_1_2020 1577836800LL

int main(void) {
    int failed = 0;
    struct timespec t, m1, m2;

    if (clock_gettime(CLOCK_REALTIME, &t) != 0) {
        printf("realtime FAIL: %s\n", strerror(errno));
        failed = 1;
    } else if ((long long)t.tv_sec > JAN_1_2020) {
        printf("realtime ok\n");
    } else {
        printf("realtime FAIL: %lld\n", (long long)t.tv_sec);
        failed = 1;
    }

    if (clock_gettime(CLOCK_MONOTONIC, &m1) != 0 ||
        clock_gettime(CLOCK_MONOTONIC, &m2) != 0) {
        printf("monotonic FAIL: %s\n", strerror(errno));
        failed = 1;
    } else if (m2.tv_sec > m1.tv_sec ||
               (m2.tv_sec == m1.tv_sec && m2.tv_nsec >= m1.tv_nsec)) {
        printf("monotonic ok\n");
    } else {
        printf("monotonic FAIL: went backwards\n");
        failed = 1;
    }

    unsigned char buf[32];
    memset(buf, 0, sizeof buf);
    if (getentropy(buf, sizeof buf) != 0) {
        printf("random FAIL: %s\n", strerror(errno));
        failed = 1;
    } else {
        int nonzero = 0;
        for (size_t i = 0; i < sizeof buf; i++)
            nonzero |= buf[i];
        if (nonzero) {
            printf("random ok\n");
        } else {
            printf("random FAIL: all zeros\n");
            failed = 1;
        }
    }
    return failed;
}
