/* Checkpoint-latency program: pure computation, forever (the bench checkpoints it many times,
   then stops it with `stasis kill`). It cycles through the kinds of code a safe-point poll has to
   reach: a tight integer loop, nested f64 loops, naive recursion (no loop at all) and qsort
   with a comparator. No WASI call after the first line.
   usage: spin            prints "spin started" and never returns */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static uint64_t mix64(uint64_t x) {
  x ^= x >> 30; x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27; x *= 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

#define N 64
static double A[N][N], B[N][N], C[N][N];
static uint32_t items[1 << 14];

static __attribute__((noinline)) int fib(int n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); }
static __attribute__((noinline)) int cmp(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return (x > y) - (x < y);
}

volatile uint64_t sink; /* keeps the work from being optimised away */

int main(void) {
  printf("spin started\n");
  fflush(stdout);
  uint64_t h = 1;
  for (uint64_t round = 0;; round++) {
    for (long i = 0; i < 5000000; i++) h = mix64(h + (uint64_t)i); /* ~20 ms */
    for (int i = 0; i < N; i++)
      for (int j = 0; j < N; j++) { A[i][j] = (double)((h >> (i & 31)) & 255) + j; B[i][j] = (double)(i ^ j); C[i][j] = 0; }
    for (int r = 0; r < 8; r++)
      for (int i = 0; i < N; i++)
        for (int k = 0; k < N; k++)
          for (int j = 0; j < N; j++) C[i][j] += A[i][k] * B[k][j];
    h ^= (uint64_t)C[round % N][(round * 7) % N];
    h += (uint64_t)fib(25);                                              /* ~250k calls */
    for (unsigned i = 0; i < sizeof items / sizeof *items; i++) items[i] = (uint32_t)mix64(h + i);
    qsort(items, sizeof items / sizeof *items, sizeof *items, cmp);
    h ^= items[round % (sizeof items / sizeof *items)];
    sink = h;
  }
}
