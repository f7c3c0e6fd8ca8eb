// The demo program: counts, printing a line every 300 ms and keeping a running checksum in
// memory, so a restarted run visibly carries on from where it was checkpointed.
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

int main(int argc, char **argv) {
  int n = argc > 1 ? atoi(argv[1]) : 20;
  unsigned long sum = 0;
  for (int i = 1; i <= n; i++) {
    sum = sum * 31 + (unsigned long)i;
    printf("count %2d  checksum %lu\n", i, sum % 1000003);
    fflush(stdout);
    struct timespec ts = {0, 300 * 1000000L};
    nanosleep(&ts, NULL);
  }
  printf("done\n");
  return 0;
}
