/* Row "calls": call-heavy CPU work with no WASI calls until the final printf: what Asyncify
   instrumentation costs most on (every call that may unwind gets guards around it).
   usage: calls [SCALE]   (SCALE multiplies every part; default 1, about 1 s under node:wasi)
   Four parts: Takeuchi's tak (deep, non-tail recursion); a bytecode interpreter dispatching
   through a table of function pointers; qsort of ints with a comparator; a recursive binary
   tree build / sum / free. Every helper is noinline so the calls stay calls.
   Prints one line of checksums, identical under any correct runtime. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define NOINLINE __attribute__((noinline))

/* ---- tak: 10^8 calls per SCALE ---- */
static NOINLINE int tak(int x, int y, int z) {
  return y < x ? tak(tak(x - 1, y, z), tak(y - 1, z, x), tak(z - 1, x, y)) : z;
}

/* ---- interpreter: one indirect call per instruction ---- */
typedef struct { int64_t acc, x; uint32_t pc; } vm_t;
typedef void (*op_fn)(vm_t *, int32_t);
static NOINLINE void op_add(vm_t *v, int32_t a) { v->acc += a; v->pc++; }
static NOINLINE void op_mul(vm_t *v, int32_t a) { v->acc = v->acc * a + 1; v->pc++; }
static NOINLINE void op_xor(vm_t *v, int32_t a) { v->acc ^= (int64_t)a << (v->pc & 31); v->pc++; }
static NOINLINE void op_swap(vm_t *v, int32_t a) { int64_t t = v->acc; v->acc = v->x + a; v->x = t; v->pc++; }
static NOINLINE void op_rot(vm_t *v, int32_t a) {
  uint64_t u = (uint64_t)v->acc;
  v->acc = (int64_t)((u << (a & 63)) | (u >> ((64 - (a & 63)) & 63)));
  v->pc++;
}
static NOINLINE void op_jnz(vm_t *v, int32_t a) { v->pc = (v->acc & 1) ? v->pc + 1 : v->pc + 1 + (uint32_t)(a & 1); }
static op_fn const OPS[] = { op_add, op_mul, op_xor, op_swap, op_rot, op_jnz };
#define NOPS (sizeof OPS / sizeof OPS[0])

static int64_t interp(long steps) {
  enum { LEN = 251 };
  uint8_t code[LEN];
  int32_t arg[LEN];
  uint32_t s = 2463534242u;
  for (int i = 0; i < LEN; i++) {
    s ^= s << 13; s ^= s >> 17; s ^= s << 5;
    code[i] = (uint8_t)(s % NOPS);
    arg[i] = (int32_t)(s >> 8) % 1000 - 500;
  }
  vm_t v = { 1, 2, 0 };
  for (long n = 0; n < steps; n++) {
    uint32_t pc = v.pc % LEN;
    OPS[code[pc]](&v, arg[pc]);
  }
  return v.acc ^ v.x;
}

/* ---- qsort with a comparator ---- */
static NOINLINE int cmp_u32(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return (x > y) - (x < y);
}

static uint64_t sort_part(int n, int reps) {
  uint32_t *a = malloc(sizeof *a * (size_t)n);
  if (!a) { fprintf(stderr, "calls: out of memory\n"); exit(2); }
  uint32_t s = 88172645u;
  uint64_t h = 0;
  for (int r = 0; r < reps; r++) {
    for (int i = 0; i < n; i++) { s ^= s << 13; s ^= s >> 17; s ^= s << 5; a[i] = s; }
    qsort(a, (size_t)n, sizeof *a, cmp_u32);
    for (int i = 0; i < n; i += 997) h = h * 31 + a[i];
  }
  free(a);
  return h;
}

/* ---- recursive tree ---- */
typedef struct node { struct node *l, *r; uint32_t v; } node;
static NOINLINE node *build(int depth, uint32_t seed) {
  node *n = malloc(sizeof *n);
  if (!n) { fprintf(stderr, "calls: out of memory\n"); exit(2); }
  n->v = seed * 2654435761u;
  n->l = depth > 0 ? build(depth - 1, seed * 2 + 1) : NULL;
  n->r = depth > 0 ? build(depth - 1, seed * 2 + 2) : NULL;
  return n;
}
static NOINLINE uint64_t sum(const node *n) { return n ? n->v + 3 * sum(n->l) + 5 * sum(n->r) : 0; }
static NOINLINE void drop(node *n) { if (n) { drop(n->l); drop(n->r); free(n); } }

static uint64_t tree_part(int depth, int reps) {
  uint64_t h = 0;
  for (int r = 0; r < reps; r++) {
    node *t = build(depth, (uint32_t)r);
    h ^= sum(t) + (uint64_t)r;
    drop(t);
  }
  return h;
}

int main(int argc, char **argv) {
  long scale = argc > 1 ? atol(argv[1]) : 1;
  if (scale < 1) { fprintf(stderr, "calls: bad SCALE\n"); return 2; }
  long t = 0;
  for (long i = 0; i < scale; i++) t += tak(20, 10, 0);
  int64_t v = interp(16000000L * scale);
  uint64_t q = sort_part(1 << 19, (int)scale);
  uint64_t r = tree_part(18, (int)(8 * scale));
  printf("calls scale=%ld tak=%ld interp=%016llx sort=%016llx tree=%016llx\n", scale, t,
         (unsigned long long)v, (unsigned long long)q, (unsigned long long)r);
  return 0;
}
