// One poll_oneoff with argv[1] clock subscriptions of 0 ns (the host-memory
// amplification test): prints how many events came back, or the error.
#include <stdio.h>
#include <stdlib.h>
#include <wasi/api.h>

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: pollflood <subscriptions>\n");
        return 2;
    }
    long n = atol(argv[1]);
    __wasi_subscription_t *subs = calloc(n, sizeof *subs);
    __wasi_event_t *events = calloc(n, sizeof *events);
    if (!subs || !events) {
        printf("out of memory\n");
        return 1;
    }
    for (long i = 0; i < n; i++) {
        subs[i].userdata = i;
        subs[i].u.tag = __WASI_EVENTTYPE_CLOCK;
        subs[i].u.u.clock.id = __WASI_CLOCKID_MONOTONIC;
    }
    __wasi_size_t got = 0;
    __wasi_errno_t err = __wasi_poll_oneoff(subs, events, n, &got);
    if (err) {
        printf("poll_oneoff: errno %d\n", err);
        return 1;
    }
    printf("events %lu\n", (unsigned long)got);
    return 0;
}
