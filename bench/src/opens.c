/* Row "opens": COUNT open(O_RDONLY)+close() pairs (each one path_open and one fd_close),
   cycling over NFILES existing files DIR/f00, DIR/f01, ...
   usage: opens DIR [COUNT [NFILES]]   (defaults 100000 and 16) */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv) {
  if (argc < 2) { fprintf(stderr, "usage: opens DIR [COUNT [NFILES]]\n"); return 2; }
  long count = argc > 2 ? atol(argv[2]) : 100000L;
  int nfiles = argc > 3 ? atoi(argv[3]) : 16;
  if (nfiles < 1 || nfiles > 100) { fprintf(stderr, "opens: NFILES must be 1..100\n"); return 2; }
  static char paths[100][512];
  for (int i = 0; i < nfiles; i++) snprintf(paths[i], sizeof paths[i], "%s/f%02d", argv[1], i);
  long ok = 0;
  for (long i = 0; i < count; i++) {
    int fd = open(paths[i % nfiles], O_RDONLY);
    if (fd < 0) { perror(paths[i % nfiles]); return 1; }
    if (close(fd) != 0) { perror("opens: close"); return 1; }
    ok++;
  }
  printf("opens count=%ld files=%d\n", ok, nfiles);
  return 0;
}
