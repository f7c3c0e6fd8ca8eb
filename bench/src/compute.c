/* Row "compute": CPU-bound work that makes no WASI calls between start-up and the final printf.
   usage: compute [SCALE]   (SCALE multiplies every part; default 1, about 1 s under node:wasi)
   Three parts: 64-bit integer hashing, a double-precision matrix multiply, and naive recursion.
   Prints one line of checksums, identical under any correct runtime. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static uint64_t mix64(uint64_t x) { /* splitmix64 finaliser */
  x ^= x >> 30; x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27; x *= 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

static uint64_t hash_part(long iters) {
  uint64_t h = 0x9e3779b97f4a7c15ULL, acc = 0;
  for (long i = 0; i < iters; i++) {
    h = mix64(h + (uint64_t)i);
    acc ^= h >> (h & 31);
    acc = (acc << 7) | (acc >> 57);
  }
  return acc ^ h;
}

#define N 160
static double A[N][N], B[N][N], C[N][N];

static double matmul_part(int reps) {
  uint64_t s = 12345;
  for (int i = 0; i < N; i++)
    for (int j = 0; j < N; j++) {
      s = mix64(s); A[i][j] = (double)(s % 2001) / 1000.0 - 1.0;
      s = mix64(s); B[i][j] = (double)(s % 2001) / 1000.0 - 1.0;
    }
  double trace = 0;
  for (int r = 0; r < reps; r++) {
    for (int i = 0; i < N; i++)
      for (int j = 0; j < N; j++) C[i][j] = 0;
    for (int i = 0; i < N; i++)
      for (int k = 0; k < N; k++) {
        double a = A[i][k];
        for (int j = 0; j < N; j++) C[i][j] += a * B[k][j];
      }
    for (int i = 0; i < N; i++) trace += C[i][i];
    A[r % N][(r * 7) % N] += 0.001; /* so repetitions are not identical */
  }
  return trace;
}

static int fib(int n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); }

int main(int argc, char **argv) {
  long scale = argc > 1 ? atol(argv[1]) : 1;
  if (scale < 1) { fprintf(stderr, "compute: bad SCALE\n"); return 2; }
  uint64_t h = hash_part(100000000L * scale);
  double t = matmul_part((int)(64 * scale));
  long f = 0;
  for (long i = 0; i < scale; i++) f += fib(33);
  printf("compute scale=%ld hash=%016llx trace=%.6f fib=%ld\n", scale, (unsigned long long)h, t, f);
  return 0;
}
