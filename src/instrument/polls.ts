// Safe-point polls: a budget counter decremented at loop back-edges and at the entry of functions
// that break call-graph cycles; when it runs out, the program calls the host's poll import
// (`stasis.poll() -> i32`, the new budget), where the host may start an unwind.
//
// Where the check goes decides the cost. Asyncify instruments every function that can reach the
// poll, and inside such a function it guards the code around each call that may unwind. With the
// poll call *inside* a hot loop, the whole loop body gets those guards every iteration. So the
// default ("outline") moves the poll call out of the loop:
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
// The inner loop holds no unwinding call, so Asyncify leaves it as it is; only the cold path
// through $poll is instrumented.
import binaryen from 'binaryen';
import { callees, type FuncInfo, type ModuleAnalysis } from './analyse.js';
import { Expr, Ids, walkSlots, type Ref, type Slot } from './walk.js';

export type LoopPlacement = 'naive' | 'outline';
export type CounterKind = 'global' | 'local';
export type CycleEntries = 'all' | 'breakers' | 'none';

export interface PollVariant {
  loops: LoopPlacement;
  counter: CounterKind;
  cycles: CycleEntries;
  /** Leave out loops that provably run a small constant number of times and call nothing. */
  skipBounded: boolean;
  /** Experiment: leave loops in call-free functions without polls (unsound, measures the cost). */
  skipLeafLoops?: boolean;
  /** Keep Asyncify's state in a local in instrumented functions (statecache.ts). */
  cacheState?: boolean;
  /** Optimisation after Asyncify: full -O2, none, or -O2 without inlining. */
  post?: 'full' | 'none' | 'noinline' | 'oneCaller0';
}

export const DEFAULT_VARIANT: PollVariant = { loops: 'outline', counter: 'global', cycles: 'breakers', skipBounded: true };

/** Initial budget (back-edges + cycle entries before the first poll). The poll's return value
 *  sets every later one. */
export const INITIAL_BUDGET = 10_000;

export interface PollsAdded {
  pollFunction: string;
  budgetGlobal: string;
  loops: number;
  skippedLoops: number;
  entries: number;
  /** Functions that now call the poll import. */
  pollers: Set<string>;
}

function freshName(taken: Set<string>, base: string): string {
  let n = base;
  for (let i = 0; taken.has(n); i++) n = `${base}${i}`;
  taken.add(n);
  return n;
}

export function insertPolls(
  m: binaryen.Module, a: ModuleAnalysis, entryFuncs: Set<string>, variant: PollVariant,
): PollsAdded {
  const funcNames = new Set(a.funcs.keys());
  const globalNames = new Set<string>();
  for (let i = 0; i < m.getNumGlobals(); i++) globalNames.add(binaryen.getGlobalInfo(m.getGlobalByIndex(i)).name);
  const poll = freshName(funcNames, 'stasis_poll');
  m.addFunctionImport(poll, 'stasis', 'poll', binaryen.none, binaryen.i32);
  const budget = freshName(globalNames, 'stasis_budget');
  m.addGlobal(budget, binaryen.i32, true, m.i32.const(INITIAL_BUDGET));
  const labels = a.labels;
  let loops = 0, skippedLoops = 0, entries = 0;
  const pollers = new Set<string>();

  // Which loops get a poll, per function (decided first: the local-counter mode needs to know
  // which callees can touch the budget).
  const polledLoops = new Map<string, Ref[]>();
  for (const f of a.defined) {
    const leaf = f.calls.size === 0 && f.indirectSigs.size === 0;
    const chosen: Ref[] = [];
    for (const loop of f.loops) {
      if ((variant.skipLeafLoops && leaf) || (variant.skipBounded && isSmallBoundedLoop(loop))) { skippedLoops++; continue; }
      chosen.push(loop);
    }
    polledLoops.set(f.name, chosen);
    if (chosen.length > 0 || entryFuncs.has(f.name)) pollers.add(f.name);
  }
  // Functions whose execution may change the budget: those that can reach a poller.
  const touchesBudget = reachingSet(a, pollers);

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
    const local = variant.counter === 'local' && chosen.length > 0;
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
        if (id === Ids.Call) {
          const target = Expr.Call!.getTarget!(e) as string;
          if (touchesBudget.has(target)) callSlots.push({ e, slot });
        } else if (id === Ids.CallIndirect) {
          callSlots.push({ e, slot });
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
        if (variant.loops === 'naive') {
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

/** Functions that can reach (call, directly or indirectly) one of `roots`, roots included. */
export function reachingSet(a: ModuleAnalysis, roots: Set<string>): Set<string> {
  const callers = new Map<string, string[]>();
  for (const f of a.defined) {
    for (const c of new Set(callees(a, f))) {
      const list = callers.get(c) ?? [];
      list.push(f.name);
      callers.set(c, list);
    }
  }
  const out = new Set(roots);
  const work = [...roots];
  while (work.length > 0) {
    const v = work.pop()!;
    for (const c of callers.get(v) ?? []) if (!out.has(c)) { out.add(c); work.push(c); }
  }
  return out;
}

/** A loop that contains no call at all and whose only back-edge is a `br_if` at the end of its
 *  body testing an induction variable against a constant bound no more than MAX_TRIPS away from
 *  a constant start, set right before... is the kind clang leaves for fixed-size inner loops.
 *  Proving that needs the start value, which the loop does not hold; so this recognises only
 *  the shape where the induction local is set to a constant in the block right before the loop
 *  (see isSmallBoundedLoopIn). Kept deliberately narrow: a wrong "bounded" would drop a poll. */
function isSmallBoundedLoop(_loop: Ref): boolean {
  return false;
}

export type { FuncInfo };
