/* Row "journal-churn": COUNT steps of a job that keeps one result file per step: create a
   temporary file (O_CREAT|O_EXCL), write 64 bytes, close, rename it into place, remove the
   result of 5 steps before; every 10 steps a directory is made, and the one before removed.
   usage: churn DIR [COUNT]   (default 20000) */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void die(const char *what, const char *p) {
  perror(p);
  fprintf(stderr, "churn: %s failed\n", what);
  exit(1);
}

int main(int argc, char **argv) {
  if (argc < 2) { fprintf(stderr, "usage: churn DIR [COUNT]\n"); return 2; }
  const char *dir = argv[1];
  long count = argc > 2 ? atol(argv[2]) : 20000L;
  char tmp[512], path[512], text[64];
  snprintf(tmp, sizeof tmp, "%s/tmp-result", dir);
  for (long s = 1; s <= count; s++) {
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (fd < 0) die("create", tmp);
    memset(text, ' ', sizeof text);
    snprintf(text, sizeof text, "result of step %ld: %ld", s, s * s * 7 % 1000);
    text[sizeof text - 1] = '\n';
    if (write(fd, text, sizeof text) != (ssize_t)sizeof text) die("write", tmp);
    if (close(fd) != 0) die("close", tmp);
    snprintf(path, sizeof path, "%s/result-%06ld", dir, s);
    if (rename(tmp, path) != 0) die("rename", path);
    if (s > 5) {
      snprintf(path, sizeof path, "%s/result-%06ld", dir, s - 5);
      if (unlink(path) != 0) die("unlink", path);
    }
    if (s % 10 == 0) {
      snprintf(path, sizeof path, "%s/batch-%06ld", dir, s / 10);
      if (mkdir(path, 0755) != 0) die("mkdir", path);
      if (s > 10) {
        snprintf(path, sizeof path, "%s/batch-%06ld", dir, s / 10 - 1);
        if (rmdir(path) != 0) die("rmdir", path);
      }
    }
  }
  printf("churn steps=%ld\n", count);
  return 0;
}
