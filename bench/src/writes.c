/* Row "writes": COUNT separate 16-byte write()s to a new file (each one fd_write with one iovec;
   write() on a raw fd is not buffered by wasi-libc).
   usage: writes PATH [COUNT]   (default 1000000)
   Record i is the 15-digit hex of i*0x9E3779B1 (mod 2^60) followed by '\n'. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv) {
  if (argc < 2) { fprintf(stderr, "usage: writes PATH [COUNT]\n"); return 2; }
  long count = argc > 2 ? atol(argv[2]) : 1000000L;
  int fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) { perror("writes: open"); return 1; }
  static const char hex[] = "0123456789abcdef";
  char rec[16];
  rec[15] = '\n';
  uint64_t sum = 0;
  for (long i = 0; i < count; i++) {
    uint64_t v = ((uint64_t)i * 0x9E3779B1ULL) & 0x0FFFFFFFFFFFFFFFULL;
    for (int d = 14; d >= 0; d--) { rec[d] = hex[v & 15]; v >>= 4; }
    ssize_t n = write(fd, rec, sizeof rec);
    if (n != (ssize_t)sizeof rec) { perror("writes: write"); return 1; }
    sum += (uint64_t)n;
  }
  if (close(fd) != 0) { perror("writes: close"); return 1; }
  printf("writes count=%ld bytes=%llu\n", count, (unsigned long long)sum);
  return 0;
}
