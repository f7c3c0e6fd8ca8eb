/* The open-database program: opens FILE read-write, writes 8 bytes in its middle (so its
   offset stays before the end: Stasis saves such a file with each checkpoint), prints
   "ready size=N", then sleeps in 10 ms nanosleeps until killed. Whenever one of those sleeps
   took more than 20 ms (a checkpoint held the program), it prints "stall ms=N": the pause as
   the program saw it, monotonic clock.
   usage: dbfile FILE */
#include <fcntl.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

static long long now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1000LL + t.tv_nsec / 1000000;
}

int main(int argc, char **argv) {
  if (argc < 2) { fprintf(stderr, "usage: dbfile FILE\n"); return 2; }
  int fd = open(argv[1], O_RDWR);
  if (fd < 0) { perror(argv[1]); return 3; }
  off_t size = lseek(fd, 0, SEEK_END);
  if (size < 16 || lseek(fd, size / 2, SEEK_SET) < 0 || write(fd, "dbfile!\n", 8) != 8) {
    fprintf(stderr, "dbfile: cannot write in the middle of %s\n", argv[1]);
    return 3;
  }
  printf("ready size=%lld\n", (long long)size);
  fflush(stdout);
  struct timespec ten = {0, 10 * 1000000L};
  for (long long last = now_ms();;) {
    nanosleep(&ten, NULL);
    long long t = now_ms();
    if (t - last > 20) { printf("stall ms=%lld\n", t - last); fflush(stdout); }
    last = t;
  }
}
