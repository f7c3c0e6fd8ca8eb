// Poll placement rules (src/instrument/polls.ts) on hand-written loops: which loops provably walk
// memory (no poll needed), which pass a poll in every iteration through a call, and the
// allocator's loops, left without polls by name.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import binaryen from 'binaryen';
import { analyseModule } from '../src/instrument/analyse.js';
import { callsPollerEveryIteration, isMemoryWalkLoop } from '../src/instrument/polls.js';
import { instrument } from '../src/instrument/index.js';
import { Expr, Ids, walk as walkExpr } from '../src/instrument/walk.js';

/** The loops of function $f in a module made of `funcs` (WAT), in order. */
function loopsOf(funcs: string): number[] {
  const m = binaryen.parseText(`(module (memory (export "memory") 1) ${funcs})`);
  const f = analyseModule(m).defined.find((d) => d.name === 'f');
  assert.ok(f, 'no $f');
  return f.loops;
}

const walk = (body: string): boolean => {
  const loops = loopsOf(`(func $f (param $p i32) (param $q i32) (param $n i32) (local $x i32) ${body})`);
  assert.equal(loops.length, 1);
  return isMemoryWalkLoop(loops[0]!);
};

test('a pointer stepped by a constant with an access at it each iteration is a memory walk', () => {
  assert.equal(walk(`(loop $l (i32.store (local.get $p) (i32.const 0))
    (local.set $p (i32.add (local.get $p) (i32.const 4))) (br $l))`), true);
});

test('a pointer stepped through a second local (q = p - 8; load q; store p; p = q) is a memory walk', () => {
  assert.equal(walk(`(loop $l
    (i32.store (local.get $p) (i32.load (local.tee $q (i32.add (local.get $p) (i32.const -8)))))
    (local.set $p (local.get $q))
    (br_if $l (i32.gt_s (local.tee $n (i32.add (local.get $n) (i32.const -1))) (i32.const 2))))`), true);
});

test('a bounded copy (the back-edge after a test, an exit that sets p) is a memory walk', () => {
  // for (i = 0; i < 199 && s[i]; i++) as compilers emit it: the step and the back-edge sit after
  // the early-exit test, and the exit path writes the index before leaving.
  assert.equal(walk(`(block $out (loop $l
    (block $b
      (br_if $b (i32.eqz (i32.load8_u (local.get $p))))
      (local.set $p (i32.add (local.get $p) (i32.const 1)))
      (br $l))
    (local.set $p (i32.const 199))
    (br $out)))`), true);
  // The same with the step only on one arm before the back-edge is not.
  assert.equal(walk(`(block $out (loop $l
    (block $b
      (br_if $b (i32.eqz (i32.load8_u (local.get $p))))
      (if (local.get $n) (then (local.set $p (i32.add (local.get $p) (i32.const 1)))))
      (br $l))
    (br $out)))`), false);
});

test('p = q before q = p - 8 in the iteration is not a walk (p could take a stale q)', () => {
  assert.equal(walk(`(loop $l
    (local.set $p (local.get $q))
    (i32.store (local.get $p) (i32.load (local.tee $q (i32.add (local.get $p) (i32.const -8)))))
    (br $l))`), false);
});

test('copying a local that is not stepped from p is not a walk', () => {
  assert.equal(walk(`(loop $l
    (local.set $q (i32.add (local.get $x) (i32.const 8)))
    (i32.store (local.get $p) (i32.const 0))
    (local.set $p (local.get $q))
    (br $l))`), false);
});

test('mixed steps of both signs, pointer chasing and a conditional step are not walks', () => {
  assert.equal(walk(`(loop $l
    (local.set $q (i32.add (local.get $p) (i32.const 8)))
    (i32.store (local.get $p) (i32.const 0))
    (local.set $p (local.get $q))
    (local.set $q (i32.add (local.get $p) (i32.const -8)))
    (br $l))`), false);
  assert.equal(walk(`(loop $l (local.set $p (i32.load (local.get $p))) (br_if $l (local.get $p)))`), false);
  assert.equal(walk(`(loop $l (i32.store (local.get $p) (i32.const 0))
    (if (local.get $n) (then (local.set $p (i32.add (local.get $p) (i32.const 4))))) (br $l))`), false);
});

test('a loop that calls an entry-polled function in every iteration needs no poll of its own', () => {
  const funcs = (body: string): string => `(func $g (param i32) (result i32) (local.get 0))
    (func $f (param $n i32) (local $x i32) ${body})`;
  const polled = new Set(['g']);
  const every = (body: string): boolean => callsPollerEveryIteration(loopsOf(funcs(body))[0]!, polled);
  assert.equal(every(`(loop $l (local.set $n (call $g (local.get $n))) (br_if $l (local.get $n)))`), true);
  // The call only on some paths, or after the back-edge.
  assert.equal(every(`(loop $l (if (local.get $n) (then (local.set $n (call $g (local.get $n))))) (br_if $l (local.get $n)))`), false);
  assert.equal(every(`(loop $l (br_if $l (local.get $n)) (local.set $n (call $g (local.get $n))))`), false);
  // A forward skip over the call inside the iteration.
  assert.equal(every(`(loop $l (block $b (br_if $b (local.get $x)) (local.set $n (call $g (local.get $n)))) (br_if $l (local.get $n)))`), false);
  // A function that does not poll on entry does not count.
  assert.equal(callsPollerEveryIteration(loopsOf(funcs(`(loop $l (local.set $n (call $g (local.get $n))) (br_if $l (local.get $n)))`))[0]!, new Set()), false);
});

test('the allocator\'s loops get no poll (by name); the same loop elsewhere, or unnamed, does', () => {
  const loop = '(param $p i32) (result i32) (loop $l (local.set $p (i32.load (local.get $p))) (br_if $l (local.get $p))) (local.get $p)';
  const wat = `(module
    (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
    (memory (export "memory") 1)
    (func $dlmalloc (export "dlmalloc") ${loop})
    (func $walk_list (export "walk_list") ${loop})
    (func $_start (export "_start") (drop (call $dlmalloc (i32.const 0))) (drop (call $walk_list (i32.const 0)))))`;
  /** Poll calls in each exported function of the instrumented module. */
  const pollsIn = (names: boolean): Record<string, number> => {
    const src = binaryen.parseText(wat);
    const debug = binaryen.getDebugInfo();
    binaryen.setDebugInfo(names); // with or without a name section
    const bytes = src.emitBinary();
    binaryen.setDebugInfo(debug);
    src.dispose();
    const out = binaryen.readBinary(instrument(bytes, { polls: true }).bytes);
    try {
      let poll = '';
      for (let i = 0; i < out.getNumFunctions(); i++) {
        const f = binaryen.getFunctionInfo(out.getFunctionByIndex(i));
        if (f.module === 'stasis' && f.base === 'poll') poll = f.name;
      }
      assert.ok(poll, 'the module imports stasis.poll');
      const counts: Record<string, number> = {};
      for (const exported of ['dlmalloc', 'walk_list']) {
        let n = 0;
        walkExpr(binaryen.getFunctionInfo(out.getFunction(binaryen.getExportInfo(out.getExport(exported)).value)).body, (e, id) => {
          if (id === Ids.Call && Expr.Call!.getTarget!(e) === poll) n++;
        });
        counts[exported] = n;
      }
      return counts;
    } finally {
      out.dispose();
    }
  };
  const named = pollsIn(true);
  assert.equal(named.dlmalloc, 0);
  assert.ok(named.walk_list! > 0);
  const unnamed = pollsIn(false);
  assert.ok(unnamed.dlmalloc! > 0, 'without a name section the allocator is not recognised');
});
