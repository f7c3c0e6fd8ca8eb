/* Start-up baseline: does nothing. The bench runs it under each runtime and subtracts its
   median wall time from every other row, so rows report the time of the program itself. */
int main(void) { return 0; }
