/* Row "read": PASSES times, opens PATH and reads it to the end with read()s of CHUNK bytes (each
   one fd_read with one iovec; read() on a raw fd is not buffered by wasi-libc), then closes it.
   usage: readfile PATH [CHUNK [PASSES]]   (defaults 65536 and 1)
   Prints a checksum of one pass (every pass must agree), kept cheap so that the host's part
   (copying file bytes into linear memory) dominates: a Fletcher-style sum over little-endian
   32-bit words w (a short tail is zero-padded): a = a + w, b = b + a (mod 2^32), both from 0.
   bench.ts computes the same over the file it wrote. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_CHUNK (1 << 20)
static uint32_t buf[MAX_CHUNK / 4 + 1];

int main(int argc, char **argv) {
  if (argc < 2) { fprintf(stderr, "usage: readfile PATH [CHUNK [PASSES]]\n"); return 2; }
  long chunk = argc > 2 ? atol(argv[2]) : 65536L;
  long passes = argc > 3 ? atol(argv[3]) : 1;
  if (chunk < 4 || chunk > MAX_CHUNK || chunk % 4) { fprintf(stderr, "readfile: bad CHUNK\n"); return 2; }
  if (passes < 1) { fprintf(stderr, "readfile: bad PASSES\n"); return 2; }
  uint32_t a0 = 0, b0 = 0;
  unsigned long long total0 = 0, reads = 0;
  for (long p = 0; p < passes; p++) {
    int fd = open(argv[1], O_RDONLY);
    if (fd < 0) { perror(argv[1]); return 1; }
    uint32_t a = 0, b = 0;
    unsigned long long total = 0;
    for (;;) {
      ssize_t n = read(fd, buf, (size_t)chunk);
      if (n < 0) { perror("readfile: read"); return 1; }
      reads++;
      if (n == 0) break;
      total += (unsigned long long)n;
      size_t words = (size_t)n / 4;
      if (n % 4) { memset((char *)buf + n, 0, 4 - n % 4); words++; }
      for (size_t i = 0; i < words; i++) { a += buf[i]; b += a; }
    }
    if (close(fd) != 0) { perror("readfile: close"); return 1; }
    if (p == 0) { a0 = a; b0 = b; total0 = total; }
    else if (a != a0 || b != b0 || total != total0) { fprintf(stderr, "readfile: pass %ld differs\n", p); return 1; }
  }
  printf("readfile bytes=%llu passes=%ld reads=%llu sum=%08x%08x\n", total0, passes, reads, b0, a0);
  return 0;
}
