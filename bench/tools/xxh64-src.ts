// Source of the XXH64 hash used to name and check memory chunks (src/image/xxh64.ts embeds
// it compiled). XXH64 is the 64-bit xxHash by Yann Collet, as specified in
// https://github.com/Cyan4973/xxHash/blob/dev/doc/xxhash_spec.md; in wasm it hashes
// ~11 GB/s on the bench VM, where node:crypto's sha256 does 1.4 GB/s.
// Regenerate the embedded binary after changing this: node dist/bench/tools/build-xxh64.js
const P1 = '0x9E3779B185EBCA87';
const P2 = '0xC2B2AE3D27D4EB4F';
const P3 = '0x165667B19E3779F9';
const P4 = '0x85EBCA77C2B2AE63';
const P5 = '0x27D4EB2F165667C5';
const round = (acc: string, inp: string) =>
  `(i64.mul (i64.rotl (i64.add ${acc} (i64.mul ${inp} (i64.const ${P2}))) (i64.const 31)) (i64.const ${P1}))`;

/**
 * (func xxh64 (param ptr i32) (param len i32) (param seed i64) (result i64)) over the module's
 * memory: its own (exported as "memory"), or with `imported`, the memory given as env.memory.
 */
export const xxh64Wat = (imported: boolean) => `(module
 ${imported ? '(import "env" "memory" (memory 0))' : '(memory (export "memory") 1)'}
 (func $round (param $acc i64) (param $inp i64) (result i64) ${round('(local.get $acc)', '(local.get $inp)')})
 (func $merge (param $acc i64) (param $v i64) (result i64)
  (i64.add (i64.mul (i64.xor (local.get $acc) (call $round (i64.const 0) (local.get $v))) (i64.const ${P1})) (i64.const ${P4})))
 (func (export "xxh64") (param $p i32) (param $len i32) (param $seed i64) (result i64)
  (local $end i32) (local $lim i32) (local $v1 i64) (local $v2 i64) (local $v3 i64) (local $v4 i64) (local $h i64)
  (local.set $end (i32.add (local.get $p) (local.get $len)))
  (if (i32.ge_u (local.get $len) (i32.const 32))
   (then
    (local.set $lim (i32.sub (local.get $end) (i32.const 32)))
    (local.set $v1 (i64.add (local.get $seed) (i64.add (i64.const ${P1}) (i64.const ${P2}))))
    (local.set $v2 (i64.add (local.get $seed) (i64.const ${P2})))
    (local.set $v3 (local.get $seed))
    (local.set $v4 (i64.sub (local.get $seed) (i64.const ${P1})))
    (loop $l
     (local.set $v1 ${round('(local.get $v1)', '(i64.load offset=0 (local.get $p))')})
     (local.set $v2 ${round('(local.get $v2)', '(i64.load offset=8 (local.get $p))')})
     (local.set $v3 ${round('(local.get $v3)', '(i64.load offset=16 (local.get $p))')})
     (local.set $v4 ${round('(local.get $v4)', '(i64.load offset=24 (local.get $p))')})
     (local.set $p (i32.add (local.get $p) (i32.const 32)))
     (br_if $l (i32.le_u (local.get $p) (local.get $lim))))
    (local.set $h (i64.add (i64.add (i64.rotl (local.get $v1) (i64.const 1)) (i64.rotl (local.get $v2) (i64.const 7)))
                           (i64.add (i64.rotl (local.get $v3) (i64.const 12)) (i64.rotl (local.get $v4) (i64.const 18)))))
    (local.set $h (call $merge (local.get $h) (local.get $v1)))
    (local.set $h (call $merge (local.get $h) (local.get $v2)))
    (local.set $h (call $merge (local.get $h) (local.get $v3)))
    (local.set $h (call $merge (local.get $h) (local.get $v4))))
   (else (local.set $h (i64.add (local.get $seed) (i64.const ${P5})))))
  (local.set $h (i64.add (local.get $h) (i64.extend_i32_u (local.get $len))))
  (block $b8 (loop $l8
   (br_if $b8 (i32.gt_u (i32.add (local.get $p) (i32.const 8)) (local.get $end)))
   (local.set $h (i64.add (i64.mul (i64.rotl (i64.xor (local.get $h) (call $round (i64.const 0) (i64.load (local.get $p)))) (i64.const 27)) (i64.const ${P1})) (i64.const ${P4})))
   (local.set $p (i32.add (local.get $p) (i32.const 8)))
   (br $l8)))
  (if (i32.le_u (i32.add (local.get $p) (i32.const 4)) (local.get $end)) (then
   (local.set $h (i64.add (i64.mul (i64.rotl (i64.xor (local.get $h) (i64.mul (i64.load32_u (local.get $p)) (i64.const ${P1}))) (i64.const 23)) (i64.const ${P2})) (i64.const ${P3})))
   (local.set $p (i32.add (local.get $p) (i32.const 4)))))
  (block $b1 (loop $l1
   (br_if $b1 (i32.ge_u (local.get $p) (local.get $end)))
   (local.set $h (i64.mul (i64.rotl (i64.xor (local.get $h) (i64.mul (i64.load8_u (local.get $p)) (i64.const ${P5}))) (i64.const 11)) (i64.const ${P1})))
   (local.set $p (i32.add (local.get $p) (i32.const 1)))
   (br $l1)))
  (local.set $h (i64.mul (i64.xor (local.get $h) (i64.shr_u (local.get $h) (i64.const 33))) (i64.const ${P2})))
  (local.set $h (i64.mul (i64.xor (local.get $h) (i64.shr_u (local.get $h) (i64.const 29))) (i64.const ${P3})))
  (i64.xor (local.get $h) (i64.shr_u (local.get $h) (i64.const 32)))))`;
