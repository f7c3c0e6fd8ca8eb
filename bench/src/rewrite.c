/* Row "journal-rewrite": rewrites FILE in place, whole, in 1 MiB writes from its start (a
   database rewriting every page). Byte i becomes (i * 31 + 7) & 255.
   usage: rewrite FILE */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static unsigned char buf[1 << 20];

int main(int argc, char **argv) {
  if (argc < 2) { fprintf(stderr, "usage: rewrite FILE\n"); return 2; }
  int fd = open(argv[1], O_RDWR);
  if (fd < 0) { perror(argv[1]); return 1; }
  off_t size = lseek(fd, 0, SEEK_END);
  if (size < 0 || lseek(fd, 0, SEEK_SET) != 0) { perror("rewrite: lseek"); return 1; }
  for (off_t at = 0; at < size; at += sizeof buf) {
    size_t n = size - at < (off_t)sizeof buf ? (size_t)(size - at) : sizeof buf;
    for (size_t i = 0; i < n; i++) buf[i] = (unsigned char)(((at + i) * 31 + 7) & 255);
    if (write(fd, buf, n) != (ssize_t)n) { perror("rewrite: write"); return 1; }
  }
  if (close(fd) != 0) { perror("rewrite: close"); return 1; }
  printf("rewrite bytes=%lld\n", (long long)size);
  return 0;
}
