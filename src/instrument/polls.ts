// Safe-point polls: a budget counter decremented at loop back-edges and at the entry of functions
// that break call-graph cycles; when it runs out, the program calls the host's poll import
// (`stasis.poll() -> i32`, returning the next budget), where the host may start an unwind.
//
// Where the check goes decides the cost (measurements: bench/polls.ts). Asyncify instruments
// every function that can reach the poll and guards the code around each call that may unwind,
// so the default placement is chosen to keep hot code out of that:
//
// 1. Outlined polls. The poll call is moved out of the loop it serves:
//
//   (loop $L body)            (loop $outer                      ;; the original Loop node, renamed
//                        ==>    (block $exit
//                                 (block $poll
//                                   (loop $inner
//                                     (block $L body (br $exit))  ;; `br $L` now lands below
//                                     (budget -= 1)
//                                     (br_if $inner (budget > 0))))
//                                 (budget = call $poll)
//                                 (br $outer)))
//
//    The inner loop holds no unwinding call, so Asyncify leaves it as it is; only the cold path
//    through $poll is instrumented. (A poll inline at the loop header costs 1.2-2x on hot loops.)
// 2. The counter lives in a local (one per function) when the function's polled loops call
//    nothing that uses the budget; it is handed over through the global around calls that may
//    use it and at exits, so accounting stays exact across calls. A global read-modify-write per
//    back-edge costs up to +40% on a tight loop. Functions whose polled loops do call such code
//    decrement the global directly (cheaper than handing over around every call).
// 3. No poll in innermost call-free loops that provably walk memory (isMemoryWalkLoop): their
//    running time is bounded by the memory they scan, like memory.copy. This keeps libc's
//    string/memory routines and plain array loops uninstrumented; instrumenting them cost up to
//    2x on libc-heavy code through per-call overhead.
// 4. Recursion: one poll at the entry of each function of a greedy feedback vertex set of the
//    call graph (call_indirect = every table function of the same signature), so every cycle of
//    calls passes a poll.
// 5. No poll in loops whose every iteration calls a function that polls on entry (4.), and
//    none in the loops of wasi-libc's allocator (dlmalloc): they walk its bins, trees and
//    segments, which takes microseconds on a consistent heap, and polls there made malloc and
//    free, and everything that calls them, Asyncify-instrumented (a tree-building benchmark ran
//    1.95x instead of 1.60x the original). Matched by function name, so a module without a name
//    section keeps its polls.
import binaryen from 'binaryen';
import { POLL_BUDGET, POLL_IMPORT } from './abi.js';
import { reachingSet, sigKey, type FuncInfo, type ModuleAnalysis } from './analyse.js';
import type { PollVariant } from './types.js';
import { Expr, Ids, childrenOf, walk, walkSlots, type Ref, type Slot } from './walk.js';

export interface PollsAdded {
  pollFunction: string;
  budgetGlobal: string;
  loops: number;
  skippedLoops: number;
  entries: number;
  /** Functions that now call the poll import. */
  pollers: Set<string>;
}

/** Where the search for a free name of each base goes on (names are only ever added): a name
 *  per loop made the search from the start quadratic in the loops of a big program. */
const searchFrom = new WeakMap<Set<string>, Map<string, number>>();

/** `base`, else `base0`, `base1`, ...: the first one not in `taken` (which gets it). */
function freshName(taken: Set<string>, base: string): string {
  let from = searchFrom.get(taken);
  if (from === undefined) searchFrom.set(taken, from = new Map());
  let i = from.get(base) ?? -1;
  let n = i < 0 ? base : `${base}${i}`;
  while (taken.has(n)) n = `${base}${++i}`;
  from.set(base, i + 1);
  taken.add(n);
  return n;
}

export function insertPolls(
  m: binaryen.Module, a: ModuleAnalysis, entryFuncs: Set<string>, variant: PollVariant,
  unwindImports: Set<string> = new Set(),
): PollsAdded {
  const funcNames = new Set(a.funcs.keys());
  const globalNames = new Set<string>();
  for (let i = 0; i < m.getNumGlobals(); i++) globalNames.add(binaryen.getGlobalInfo(m.getGlobalByIndex(i)).name);
  const poll = freshName(funcNames, 'stasis_poll');
  m.addFunctionImport(poll, POLL_IMPORT.module, POLL_IMPORT.name, binaryen.none, binaryen.i32);
  const budget = freshName(globalNames, 'stasis_budget');
  // The budget before the first poll; the poll's return value sets every later one.
  m.addGlobal(budget, binaryen.i32, true, m.i32.const(POLL_BUDGET));
  const labels = a.labels;
  let loops = 0, skippedLoops = 0, entries = 0;
  const pollers = new Set<string>();

  // Which loops get a poll, per function (decided first: the local-counter mode needs to know
  // which callees can touch the budget).
  const polledLoops = new Map<string, Ref[]>();
  for (const f of a.defined) {
    const leaf = f.calls.size === 0 && f.indirectSigs.size === 0;
    const chosen: Ref[] = [];
    const allocator = variant.trustAllocator === true && isAllocatorFunction(f.name);
    for (const loop of f.loops) {
      if (allocator || (variant.skipLeafLoops && leaf) || (variant.skipBounded && isMemoryWalkLoop(loop))
        || (variant.skipPolledCalls && callsPollerEveryIteration(loop, entryFuncs))) { skippedLoops++; continue; }
      chosen.push(loop);
    }
    polledLoops.set(f.name, chosen);
    if (chosen.length > 0 || entryFuncs.has(f.name)) pollers.add(f.name);
  }
  // Functions whose execution may change the budget: those that can reach a poller.
  const touchesBudget = reachingSet(a, pollers);
  // Functions a call to which may unwind (approximately what Asyncify will instrument).
  const unwinders = reachingSet(a, new Set([...pollers, ...unwindImports]));

  const globalCounter: Counter = {
    dec: () => m.global.set(budget, m.i32.sub(m.global.get(budget, binaryen.i32), m.i32.const(1))),
    positive: () => m.i32.gt_s(m.global.get(budget, binaryen.i32), m.i32.const(0)),
    refill: () => m.global.set(budget, m.call(poll, [], binaryen.i32)),
  };

  for (const f of a.defined) {
    const chosen = polledLoops.get(f.name)!;
    const isEntry = entryFuncs.has(f.name);
    if (chosen.length === 0 && !isEntry) continue;
    // Local mode: a function with polled loops keeps the budget in a local while it runs its own
    // code, and hands it over through the global around calls that may use it and at exits.
    const local = chosen.length > 0 && (variant.counter === 'local'
      || (variant.counter === 'auto' && !chosen.some((l) => loopCallsBudgetUser(l, a, touchesBudget))));
    let counter = globalCounter;
    let c = -1;
    const temps = new Map<number, number>();
    const temp = (t: number): number => {
      let idx = temps.get(t);
      if (idx === undefined) { idx = addVar(f.ref, t); temps.set(t, idx); }
      return idx;
    };
    const callSlots: { e: Ref; slot: Slot | null }[] = [];
    const returnSlots: { e: Ref; slot: Slot | null }[] = [];
    if (local) {
      c = addVar(f.ref, binaryen.i32);
      counter = {
        dec: () => m.local.set(c, m.i32.sub(m.local.get(c, binaryen.i32), m.i32.const(1))),
        positive: () => m.i32.gt_s(m.local.get(c, binaryen.i32), m.i32.const(0)),
        refill: () => m.local.set(c, m.call(poll, [], binaryen.i32)),
      };
      walkSlots(binaryen.getFunctionInfo(f.ref).body, (e, id, slot) => {
        if (id === Ids.Call || id === Ids.CallIndirect) {
          if (callMayReach(e, id, a, touchesBudget)) callSlots.push({ e, slot });
        } else if (id === Ids.Return) {
          returnSlots.push({ e, slot });
        }
      });
    }
    const inlineCheck = (): Ref => m.block(null, [
      counter.dec(),
      m.if(m.i32.eqz(counter.positive()), counter.refill()),
    ], binaryen.none);

    const transformLoops = (): void => {
      for (const loop of chosen) {
        loops++;
        const name = Expr.Loop!.getName!(loop) as string;
        const body = Expr.Loop!.getBody!(loop) as Ref;
        if (variant.loops === 'naive' || (variant.loops === 'auto' && loopCallsBudgetUser(loop, a, unwinders))) {
          Expr.Loop!.setBody!(loop, m.block(null, [inlineCheck(), body], binaryen.auto) as unknown as number);
          continue;
        }
        const outer = freshName(labels, 'stasis_outer');
        const exit = freshName(labels, 'stasis_exit');
        const toPoll = freshName(labels, 'stasis_poll');
        const inner = freshName(labels, 'stasis_inner');
        const bodyType = binaryen.getExpressionType(body);
        const seq = bodyType === binaryen.unreachable ? [body]
          : bodyType === binaryen.none ? [body, m.br(exit)]
            : [m.br(exit, 0, body)];
        const target = m.block(name, seq, binaryen.auto);
        const innerLoop = m.loop(inner, m.block(null, [target, counter.dec(), m.br(inner, counter.positive())], binaryen.auto));
        const exitBlock = m.block(exit, [m.block(toPoll, [innerLoop], binaryen.none), counter.refill(), m.br(outer)], binaryen.auto);
        Expr.Loop!.setName!(loop, outer as unknown as number);
        Expr.Loop!.setBody!(loop, exitBlock);
        (binaryen as unknown as { Loop: { finalize(e: Ref): void } }).Loop.finalize(loop);
      }
    };

    if (local) {
      const toGlobal = (): Ref => m.global.set(budget, m.local.get(c, binaryen.i32));
      const fromGlobal = (): Ref => m.local.set(c, m.global.get(budget, binaryen.i32));
      for (const { e, slot } of callSlots) {
        const t = binaryen.getExpressionType(e);
        const wrapped = t === binaryen.none ? m.block(null, [toGlobal(), e, fromGlobal()], binaryen.none)
          : t === binaryen.unreachable ? m.block(null, [toGlobal(), e], binaryen.auto)
            : m.block(null, [toGlobal(), m.local.set(temp(t), e), fromGlobal(), m.local.get(temp(t), t)], t);
        replace(f, slot, wrapped);
      }
      for (const { e, slot } of returnSlots) {
        const v = Expr.Return!.getValue!(e) as Ref;
        if (v) {
          const t = binaryen.getExpressionType(v);
          if (t === binaryen.unreachable) continue;
          Expr.Return!.setValue!(e, m.block(null, [m.local.set(temp(t), v), toGlobal(), m.local.get(temp(t), t)], t) as unknown as number);
        } else {
          replace(f, slot, m.block(null, [toGlobal(), e], binaryen.auto));
        }
      }
      transformLoops();
      const body = binaryen.getFunctionInfo(f.ref).body;
      const rt = binaryen.getFunctionInfo(f.ref).results;
      const parts: Ref[] = [fromGlobal()];
      if (isEntry) { parts.push(inlineCheck()); entries++; }
      if (rt === binaryen.none) parts.push(body, toGlobal());
      else parts.push(m.local.set(temp(rt), body), toGlobal(), m.local.get(temp(rt), rt));
      setBody(f.ref, m.block(null, parts, binaryen.auto));
    } else {
      transformLoops();
    }
    if (!local && isEntry) {
      const body = binaryen.getFunctionInfo(f.ref).body;
      setBody(f.ref, m.block(null, [inlineCheck(), body], binaryen.auto));
      entries++;
    }
  }
  return { pollFunction: poll, budgetGlobal: budget, loops, skippedLoops, entries, pollers };
}

/** wasi-libc's allocator (dlmalloc and the helpers it keeps out of line), by name. */
const ALLOCATOR_FUNCTIONS = new Set([
  'dlmalloc', 'dlfree', 'dlrealloc', 'dlrealloc_in_place', 'dlmemalign', 'dlposix_memalign',
  'dlcalloc', 'dlvalloc', 'dlpvalloc', 'dlbulk_free', 'dlindependent_calloc',
  'dlindependent_comalloc', 'dlmalloc_trim', 'dlmalloc_usable_size', 'internal_memalign',
  'internal_bulk_free', 'ialloc', 'dispose_chunk', 'tmalloc_small', 'tmalloc_large', 'sys_alloc',
  'sys_trim', 'release_unused_segments', 'try_realloc_chunk', 'prepend_alloc', 'add_segment',
  'init_bins', 'init_top', 'mmap_resize',
]);

export function isAllocatorFunction(name: string): boolean {
  return ALLOCATOR_FUNCTIONS.has(name);
}

/** Whether the loop contains a call that may use the budget (then the global counter is cheaper
 *  than handing a local one over around every call). */
function loopCallsBudgetUser(loop: Ref, a: ModuleAnalysis, set: Set<string>): boolean {
  let found = false;
  walk(loop, (e, id) => {
    if ((id === Ids.Call || id === Ids.CallIndirect) && callMayReach(e, id, a, set)) found = true;
  });
  return found;
}

/** Whether a call may land in `set` (call_indirect: any table function of the same signature). */
function callMayReach(e: Ref, id: number, a: ModuleAnalysis, set: Set<string>): boolean {
  if (id === Ids.Call) return set.has(Expr.Call!.getTarget!(e) as string);
  const key = sigKey(Expr.CallIndirect!.getParams!(e) as number, Expr.CallIndirect!.getResults!(e) as number);
  return (a.indirectTargets.get(key) ?? []).some((t) => set.has(t));
}

interface Counter { dec: () => Ref; positive: () => Ref; refill: () => Ref }

function addVar(f: Ref, t: number): number {
  return (binaryen as unknown as { _BinaryenFunctionAddVar: (f: Ref, t: number) => number })._BinaryenFunctionAddVar(f, t);
}
function setBody(f: Ref, body: Ref): void {
  (binaryen as unknown as { Function: { setBody(f: Ref, b: Ref): void } }).Function.setBody(f, body);
}
function replace(f: FuncInfo, slot: Slot | null, e: Ref): void {
  if (slot) slot.set(e);
  else setBody(f.ref, e);
}


// ---- loops that need no poll ----
//
// A poll is left out of an innermost loop that calls nothing and *walks memory*: some local p
// changes by a constant step of one sign (only ever `p = p ± c`), every iteration steps it at
// least once and accesses memory at p (load or store at p, p + k, or the stepped value). The
// addresses it touches then move monotonically, so the loop ends or traps after at most
// memory-size / step iterations: like a bulk-memory instruction (memory.copy/fill are not
// interruptible either), its running time is bounded by the memory it scans. This is what keeps
// libc's string and memory routines (strlen, strcmp, memcpy, memset, ...) and simple array loops
// out of Asyncify's instrumented set, where per-call overhead would otherwise dominate.
// Anything the recogniser is unsure of gets a poll.

/** Largest address stride per iteration accepted: a walk cannot skip the gap between the end of
 *  memory and 2^32 unless memory is within this much of 4 GiB. */
const MAX_STRIDE = 65536;

/** True if `loop` provably walks memory (see above) and needs no poll. */
export function isMemoryWalkLoop(loop: Ref): boolean {
  const body = Expr.Loop!.getBody!(loop) as Ref;
  // Innermost and call-free; collect the writes to each local (but those right before a branch
  // out of the loop: their value is never seen by a later iteration).
  let ok = true;
  const exits = exitWrites(loop);
  const values = new Map<number, Ref[]>(); // local -> the values written to it in the loop
  walk(body, (e, id) => {
    if (id === Ids.Loop || id === Ids.Call || id === Ids.CallIndirect || id === Ids.Try) ok = false;
    else if (id === Ids.LocalSet && !exits.has(e)) {
      const idx = Expr.LocalSet!.getIndex!(e) as number;
      const list = values.get(idx) ?? [];
      list.push(Expr.LocalSet!.getValue!(e) as Ref);
      values.set(idx, list);
    }
  });
  if (!ok) return false;
  const candidates: { p: number; step: number; via: number | null }[] = [];
  const sameSign = (steps: number[]): boolean => steps.every((c) => c > 0) || steps.every((c) => c < 0);
  for (const [idx, vals] of values) {
    // All writes step the same way; the smallest step bounds how slowly the walk can move.
    const steps = vals.map((v) => stepOf(idx, v));
    if (sameSign(steps)) { candidates.push({ p: idx, step: Math.min(...steps.map(Math.abs)), via: null }); continue; }
    // The stepped value kept in a second local first (compilers do this: `q = p - 8; ... p = q`):
    // every write of p copies q and every write of q is p ± c. Then p only ever takes q's value
    // and q is always p + c as of its last write, so p moves by c whenever it changes.
    const q = copiedLocal(vals);
    if (q === null || q === idx) continue;
    const qSteps = (values.get(q) ?? []).map((v) => stepOf(idx, v));
    if (qSteps.length > 0 && sameSign(qSteps)) candidates.push({ p: idx, step: Math.min(...qSteps.map(Math.abs)), via: q });
  }
  if (candidates.length === 0) return false;
  const written = new Set(values.keys());
  return candidates.some(({ p, step, via }) => walksWith(p, step, via, loop, written));
}

/** Writes to locals that are followed, in their block, by an unconditional branch out of the
 *  loop (`i = 199; br $done` in a bounded copy): the iteration ends there without a back-edge. */
function exitWrites(loop: Ref): Set<Ref> {
  const body = Expr.Loop!.getBody!(loop) as Ref;
  const inner = new Set<string>([Expr.Loop!.getName!(loop) as string]);
  const blocks: Ref[] = [];
  walk(body, (e, id) => {
    if (id !== Ids.Block) return;
    blocks.push(e);
    const n = Expr.Block!.getName!(e) as string | null;
    if (n) inner.add(n);
  });
  const out = new Set<Ref>();
  for (const b of blocks) {
    const n = Expr.Block!.getNumChildren!(b) as number;
    for (let i = 0; i + 1 < n; i++) {
      const set = Expr.Block!.getChildAt!(b, i) as Ref, next = Expr.Block!.getChildAt!(b, i + 1) as Ref;
      if (binaryen.getExpressionId(set) === binaryen.LocalSetId && !Expr.LocalSet!.isTee!(set)
        && binaryen.getExpressionId(next) === binaryen.BreakId && !Expr.Break!.getCondition!(next)
        && !inner.has(Expr.Break!.getName!(next) as string)) out.add(set);
    }
  }
  return out;
}

/** The local every value in `vals` reads (`local.get q`), or null. */
function copiedLocal(vals: Ref[]): number | null {
  let q: number | null = null;
  for (const v of vals) {
    if (binaryen.getExpressionId(v) !== binaryen.LocalGetId) return null;
    const idx = Expr.LocalGet!.getIndex!(v) as number;
    if (q !== null && q !== idx) return null;
    q = idx;
  }
  return q;
}

/** The constant step of `local[idx] = value` if value is local[idx] ± const, else NaN. */
function stepOf(idx: number, value: Ref): number {
  const id = binaryen.getExpressionId(value);
  if (id !== binaryen.BinaryId) return NaN;
  const op = Expr.Binary!.getOp!(value) as number;
  if (op !== binaryen.AddInt32 && op !== binaryen.SubInt32) return NaN;
  const l = Expr.Binary!.getLeft!(value) as Ref, r = Expr.Binary!.getRight!(value) as Ref;
  const isP = (e: Ref): boolean => binaryen.getExpressionId(e) === binaryen.LocalGetId && Expr.LocalGet!.getIndex!(e) === idx;
  const k = (e: Ref): number => binaryen.getExpressionId(e) === binaryen.ConstId && binaryen.getExpressionType(e) === binaryen.i32
    ? Expr.Const!.getValueI32!(e) as number : NaN;
  let c = NaN;
  if (isP(l)) c = k(r);
  else if (op === binaryen.AddInt32 && isP(r)) c = k(l);
  if (op === binaryen.SubInt32) c = -c;
  return c === 0 ? NaN : c;
}

// Facts about the current iteration, as bits (everyIteration).
const STEPPED = 1, ACCESSED = 2, VIA_SET = 4, CALLED = 8;

/** Whether `loop` walks memory with local p (see above): every back-edge is preceded, in the same
 *  iteration, by a step of p and an access to memory at a small multiple of p. */
function walksWith(p: number, step: number, via: number | null, loop: Ref, written: ReadonlySet<number>): boolean {
  // With `via` q, writing p is a step only once q has been set (from p) earlier in the iteration.
  return everyIteration(loop, via === null ? VIA_SET : 0, (e, id, f) => {
    if (id === binaryen.LocalSetId) {
      const idx = Expr.LocalSet!.getIndex!(e) as number;
      if (idx === via) return f | VIA_SET;
      if (idx === p && f & VIA_SET) return f | STEPPED;
    } else if (id === binaryen.LoadId || id === binaryen.StoreId) {
      const k = scaleOfP(p, Expr[id === binaryen.LoadId ? 'Load' : 'Store']!.getPtr!(e) as Ref, written);
      // The addresses then move by k*step per iteration; a small stride cannot jump over the
      // out-of-bounds gap above memory, so the walk must end or trap.
      if (k !== 0 && Math.abs(k * step) <= MAX_STRIDE) return f | ACCESSED;
    }
    return f;
  }, (f) => (f & (STEPPED | ACCESSED)) === (STEPPED | ACCESSED));
}

/** Whether every iteration of `loop` calls (directly) one of `polled`, functions that poll on
 *  entry: then the iterations already count against the budget and the loop needs no poll. */
export function callsPollerEveryIteration(loop: Ref, polled: ReadonlySet<string>): boolean {
  return everyIteration(loop, 0, (e, id, f) =>
    id === Ids.Call && polled.has(Expr.Call!.getTarget!(e) as string) ? f | CALLED : f,
  (f) => (f & CALLED) !== 0);
}

/**
 * Follows one iteration of the loop body along every path, in evaluation order, carrying what
 * has surely happened on the way (bits, from `start`; `transfer` adds what an expression does,
 * after its operands). Paths meet at the end of a block or an if: only what holds on all of them
 * is kept. True if `atBackEdge` holds on every path to a branch back to the loop's start; paths
 * that leave the loop (a branch out, return, trap) do not matter.
 */
function everyIteration(loop: Ref, start: number, transfer: (e: Ref, id: number, facts: number) => number, atBackEdge: (facts: number) => boolean): boolean {
  const loopName = Expr.Loop!.getName!(loop) as string;
  const NONE = -1; // an unreachable point (no path gets there)
  const meet = (a: number, b: number): number => (a === NONE ? b : b === NONE ? a : a & b);
  const inner = new Map<string, number>(); // block label in the body -> facts of the branches to it
  let ok = true;
  const branch = (name: string, f: number): void => {
    if (name === loopName) { if (!atBackEdge(f)) ok = false; }
    else if (inner.has(name)) inner.set(name, meet(inner.get(name)!, f));
    // else: leaves the loop
  };
  const scan = (e: Ref, f: number): number => {
    if (!ok || f === NONE) return NONE;
    const id = binaryen.getExpressionId(e);
    if (id === binaryen.BlockId) {
      const name = Expr.Block!.getName!(e) as string | null;
      if (name) inner.set(name, NONE);
      const n = Expr.Block!.getNumChildren!(e) as number;
      for (let i = 0; i < n; i++) f = scan(Expr.Block!.getChildAt!(e, i) as Ref, f);
      return name ? meet(f, inner.get(name)!) : f;
    }
    if (id === binaryen.IfId) {
      const c = scan(Expr.If!.getCondition!(e) as Ref, f);
      const t = Expr.If!.getIfTrue!(e) as Ref, no = Expr.If!.getIfFalse!(e) as Ref;
      return meet(scan(t, c), no ? scan(no, c) : c);
    }
    if (id === binaryen.LoopId) {
      // A loop inside: its body runs at least once; branches back to it repeat what it did.
      return scan(Expr.Loop!.getBody!(e) as Ref, f);
    }
    if (id === binaryen.BreakId) {
      const value = Expr.Break!.getValue!(e) as Ref, cond = Expr.Break!.getCondition!(e) as Ref;
      if (value) f = scan(value, f);
      if (cond) f = scan(cond, f);
      if (f === NONE) return NONE;
      branch(Expr.Break!.getName!(e) as string, f);
      return cond ? f : NONE;
    }
    if (id === binaryen.SwitchId) {
      const value = Expr.Switch!.getValue!(e) as Ref;
      if (value) f = scan(value, f);
      f = scan(Expr.Switch!.getCondition!(e) as Ref, f);
      if (f === NONE) return NONE;
      for (const name of Expr.Switch!.getNames!(e) as unknown as string[]) branch(name, f);
      const d = Expr.Switch!.getDefaultName!(e) as string | null;
      if (d) branch(d, f);
      return NONE;
    }
    const kids: Ref[] = [];
    childrenOf(e, id, kids);
    for (const k of kids) if (k !== 0) f = scan(k, f);
    if (f === NONE) return NONE;
    if (id === binaryen.ReturnId || id === binaryen.UnreachableId) return NONE;
    return transfer(e, id, f);
  };
  scan(Expr.Loop!.getBody!(loop) as Ref, start);
  return ok;
}

/** The factor k if ptr = (invariant) + k * p (mod 2^32), k != 0; 0 if ptr is not of that form.
 *  Invariant: constants and locals the loop never writes. */
function scaleOfP(p: number, ptr: Ref, written: ReadonlySet<number>): number {
  const id = binaryen.getExpressionId(ptr);
  const isInvariant = (e: Ref): boolean => {
    const eid = binaryen.getExpressionId(e);
    return eid === binaryen.ConstId || (eid === binaryen.LocalGetId && !written.has(Expr.LocalGet!.getIndex!(e) as number));
  };
  const constI32 = (e: Ref): number | null => binaryen.getExpressionId(e) === binaryen.ConstId && binaryen.getExpressionType(e) === binaryen.i32
    ? Expr.Const!.getValueI32!(e) as number : null;
  if (id === binaryen.LocalGetId) return Expr.LocalGet!.getIndex!(ptr) === p ? 1 : 0;
  if (id === binaryen.LocalSetId) {
    // A tee: of p itself (only ever p ± c), or of an address computed from p.
    if (Expr.LocalSet!.getIndex!(ptr) === p) return 1;
    return scaleOfP(p, Expr.LocalSet!.getValue!(ptr) as Ref, written);
  }
  if (id !== binaryen.BinaryId) return 0;
  const op = Expr.Binary!.getOp!(ptr) as number;
  const l = Expr.Binary!.getLeft!(ptr) as Ref, r = Expr.Binary!.getRight!(ptr) as Ref;
  if (op === binaryen.AddInt32 || op === binaryen.SubInt32) {
    if (isInvariant(r)) return scaleOfP(p, l, written);
    if (isInvariant(l)) return op === binaryen.AddInt32 ? scaleOfP(p, r, written) : -scaleOfP(p, r, written);
    return 0;
  }
  if (op === binaryen.ShlInt32) {
    const k = constI32(r);
    return k !== null && (k & 31) <= 16 ? scaleOfP(p, l, written) * 2 ** (k & 31) : 0;
  }
  if (op === binaryen.MulInt32) {
    const k = constI32(r) ?? constI32(l);
    const other = constI32(r) !== null ? l : r;
    return k !== null ? scaleOfP(p, other, written) * k : 0;
  }
  return 0;
}
