/* A batch job's program for the Slurm requeue bench: mallocs MIB MiB, fills it with xorshift64*
   output (incompressible), then prints "tick N" every MS milliseconds, N ticks in all, so that
   the bench sees within MS of its restart that it runs again.
     usage: ticker MIB MS N */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

int main(int argc, char **argv) {
  size_t mib = argc > 1 ? (size_t)atol(argv[1]) : 64;
  long ms = argc > 2 ? atol(argv[2]) : 10;
  long n = argc > 3 ? atol(argv[3]) : 1000000;
  uint64_t *p = malloc(mib << 20);
  if (p == NULL) { fprintf(stderr, "ticker: cannot allocate %zu MiB\n", mib); return 1; }
  uint64_t s = 0x9E3779B97F4A7C15ULL;
  for (size_t i = 0; i < (mib << 20) / 8; i++) {
    s ^= s >> 12; s ^= s << 25; s ^= s >> 27;
    p[i] = s * 0x2545F4914F6CDD1DULL;
  }
  printf("filled %zu MiB\n", mib);
  fflush(stdout);
  for (long i = 0; i < n; i++) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    p[(size_t)i * 4096 % ((mib << 20) / 8)] ^= (uint64_t)i; /* a page changed per tick */
    printf("tick %ld\n", i);
    fflush(stdout);
  }
  return 0;
}
