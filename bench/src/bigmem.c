/* The 1 GiB checkpoint program: mallocs MIB MiB (default 1024), fills it with xorshift64*
   output (incompressible, deterministic), prints "filled ...", then serves one-line commands
   from stdin until "quit" or end of input. The bench checkpoints it while it waits in read().
     ping      -> "pong"                       (after a restart: the program runs again)
     dirty     -> rewrite 1 % of the buffer, one contiguous run at 1/3 of it -> "dirtied ..."
     scatter   -> rewrite 1 % of the buffer as every 100th 64 KiB page        -> "scattered ..."
     sum       -> "sum=<hex>" over the whole buffer
     quit      -> exit 0
   usage: bigmem [MIB] */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t state = 0x9E3779B97F4A7C15ULL;
static uint64_t next(void) { /* xorshift64* */
  state ^= state >> 12; state ^= state << 25; state ^= state >> 27;
  return state * 0x2545F4914F6CDD1DULL;
}

static void fill(uint64_t *p, size_t words) {
  for (size_t i = 0; i < words; i++) p[i] = next();
}

static uint64_t checksum(const uint64_t *p, size_t words) {
  uint64_t a = 0, b = 0;
  for (size_t i = 0; i < words; i++) { a += p[i]; b ^= a + (p[i] >> 7); }
  return a ^ (b * 31);
}

int main(int argc, char **argv) {
  long mib = argc > 1 ? atol(argv[1]) : 1024;
  if (mib < 1) { fprintf(stderr, "bigmem: bad MIB\n"); return 2; }
  size_t bytes = (size_t)mib << 20, words = bytes / 8;
  uint64_t *buf = malloc(bytes);
  if (buf == NULL) { fprintf(stderr, "bigmem: cannot allocate %ld MiB\n", mib); return 3; }
  fill(buf, words);
  printf("filled mib=%ld\n", mib);
  fflush(stdout);
  char line[64];
  while (fgets(line, sizeof line, stdin) != NULL) {
    if (strncmp(line, "ping", 4) == 0) {
      printf("pong\n");
    } else if (strncmp(line, "dirty", 5) == 0) {
      size_t n = (bytes / 100) & ~(size_t)65535, at = (bytes / 3) & ~(size_t)65535;
      fill(buf + at / 8, n / 8);
      printf("dirtied bytes=%zu\n", n);
    } else if (strncmp(line, "scatter", 7) == 0) {
      size_t page = 65536, n = 0;
      for (size_t at = 0; at + page <= bytes; at += 100 * page, n += page) fill(buf + at / 8, page / 8);
      printf("scattered bytes=%zu\n", n);
    } else if (strncmp(line, "sum", 3) == 0) {
      printf("sum=%016llx\n", (unsigned long long)checksum(buf, words));
    } else if (strncmp(line, "quit", 4) == 0) {
      return 0;
    } else {
      printf("unknown command\n");
    }
    fflush(stdout);
  }
  return 0;
}
