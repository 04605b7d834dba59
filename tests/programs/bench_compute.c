/* bench_compute: a CPU-bound workload for scripts/bench ("compute").
 *
 * usage: bench_compute [rounds]      (default 120: about 2 s under wasmtime here)
 *
 * No host calls in the loop: it measures the engine's generated code plus any
 * per-instruction instrumentation (fuel, epochs). Integer-only and
 * deterministic, so every runtime prints the same line:
 *   primes=<count> checksum=<hex>
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SIEVE 2000000

static uint8_t composite[SIEVE];

static uint32_t sieve(void) {
    uint32_t count = 0;
    memset(composite, 0, sizeof composite);
    for (uint32_t i = 2; i < SIEVE; i++) {
        if (composite[i]) continue;
        count++;
        for (uint64_t j = (uint64_t)i * i; j < SIEVE; j += i) composite[j] = 1;
    }
    return count;
}

/* xorshift + multiply mixing over a small table: branchy, memory-light */
static uint64_t mix(uint64_t seed, uint32_t n) {
    uint64_t table[256];
    for (int i = 0; i < 256; i++) table[i] = seed * (2 * (uint64_t)i + 1);
    uint64_t x = seed | 1;
    for (uint32_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        uint64_t *slot = &table[x & 255];
        *slot = (*slot ^ x) * 0x9E3779B97F4A7C15ull;
        if (*slot & 1) x += *slot >> 3; else x -= *slot << 1;
    }
    uint64_t acc = 0;
    for (int i = 0; i < 256; i++) acc = (acc ^ table[i]) * 0x100000001B3ull;
    return acc;
}

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 120;
    uint32_t primes = 0;
    uint64_t checksum = 0xcbf29ce484222325ull;
    for (int r = 0; r < rounds; r++) {
        primes = sieve();
        checksum = (checksum ^ mix(checksum + (uint64_t)r, 2000000)) * 0x100000001B3ull;
    }
    printf("primes=%u checksum=%016llx\n", primes, (unsigned long long)checksum);
    return 0;
}
