// Calls on the way to a trap: `fprintf(stderr, "out of memory"); abort();`. The error report can
// reach a WASI write, so by the call graph alone the allocator wrapper around it, and every
// function that allocates, can be on the stack at an unwind and would be Asyncify-instrumented
// (in flite: 78 of its 499 instrumented functions, and ~1/6 of the optimizing compiler's work on
// the output; V8's compile of instrumented code is most of what a launch adds, README.md here).
//
// A call is *ending* when, in its block, it is followed only by calls and straight-line code up
// to a call of a trap function (a function whose body traps at once, as wasi-libc's abort does):
// once it is made the program can only trap. Before the first ending call of such a run the
// instrumenter sets a global, the ending gate, and never clears it; the engine does not unwind
// while it is set (a checkpoint asked then is not served: the program is about to trap). So no
// unwind can start with an ending call on the stack, and the call graph leaves those calls out
// when it decides what Asyncify instruments.
//
// A call followed by a bare `unreachable` is not ending: that is how a call to a function that
// never returns is compiled (`exit(run())`, a server's `serve_forever()`), which may run for
// as long as the program does and must stay checkpointable. (A program that runs its whole
// work in the calls before an abort(), `serve(); abort();`, could not be checkpointed in them.)
import binaryen from 'binaryen';
import type { ModuleAnalysis } from './analyse.js';
import { Expr, Ids, walk, type Ref } from './walk.js';

export interface EndingCalls {
  /** Name of the ending gate global (added to the module). */
  gate: string;
  /** How many ending calls were found. */
  calls: number;
}

/** Finds the ending calls, sets the gate before them and removes them from `a`'s call graph
 *  (a function keeps a callee it also calls elsewhere). Returns null if there are none (then
 *  nothing is added). */
export function gateEndingCalls(m: binaryen.Module, a: ModuleAnalysis, gateName: string): EndingCalls | null {
  const traps = trapFunctions(a);
  if (traps.size === 0) return null;
  // Per block (one run each: the one before its first trap call): the function, where the gate
  // goes, and the ending calls.
  const found: { f: string; block: Ref; at: number; ending: string[] }[] = [];
  for (const f of a.defined) {
    walk(binaryen.getFunctionInfo(f.ref).body, (e, id) => {
      if (id !== Ids.Block) return;
      const n = Expr.Block!.getNumChildren!(e) as number;
      for (let i = 0; i < n; i++) {
        const c = Expr.Block!.getChildAt!(e, i) as Ref;
        if (!isTrapCall(c, traps)) continue;
        // Back from the trap call over straight-line siblings; the ending calls are theirs.
        const ending: string[] = [];
        let first = i;
        for (let k = i - 1; k >= 0; k--) {
          const calls = straightLineCalls(Expr.Block!.getChildAt!(e, k) as Ref);
          if (calls === null) break;
          ending.push(...calls);
          first = k;
        }
        if (ending.length > 0) found.push({ f: f.name, block: e, at: first, ending });
        break; // what follows the first trap call never runs
      }
    });
  }
  if (found.length === 0) return null;
  m.addGlobal(gateName, binaryen.i32, true, m.i32.const(0));
  const endingSites = new Map<string, Map<string, number>>();
  let calls = 0;
  for (const s of found) {
    (binaryen as unknown as { Block: { insertChildAt(b: Ref, i: number, c: Ref): void } })
      .Block.insertChildAt(s.block, s.at, m.global.set(gateName, m.i32.const(1)));
    const per = endingSites.get(s.f) ?? new Map<string, number>();
    for (const c of s.ending) per.set(c, (per.get(c) ?? 0) + 1);
    endingSites.set(s.f, per);
    calls += s.ending.length;
  }
  // Drop a callee from the call graph where every call of it is an ending one.
  for (const [name, per] of endingSites) {
    const f = a.funcs.get(name)!;
    const all = directCallCounts(f.ref);
    for (const [callee, n] of per) if (all.get(callee) === n) f.calls.delete(callee);
  }
  return { gate: gateName, calls };
}

/** Defined functions whose body traps before anything else: `unreachable` first, or a call of
 *  another such function first (abort, and thin wrappers of it). */
function trapFunctions(a: ModuleAnalysis): Set<string> {
  const out = new Set<string>();
  let grew = true;
  while (grew) {
    grew = false;
    for (const f of a.defined) {
      if (out.has(f.name)) continue;
      const first = firstExpression(binaryen.getFunctionInfo(f.ref).body);
      if (first !== 0 && (binaryen.getExpressionId(first) === binaryen.UnreachableId || isTrapCall(first, out))) {
        out.add(f.name);
        grew = true;
      }
    }
  }
  return out;
}

/** The first expression a body executes, through nested blocks (0 if empty). */
function firstExpression(e: Ref): Ref {
  while (e !== 0 && binaryen.getExpressionId(e) === binaryen.BlockId) {
    if ((Expr.Block!.getNumChildren!(e) as number) === 0) return 0;
    e = Expr.Block!.getChildAt!(e, 0) as Ref;
  }
  return e;
}

/** A call of a trap function with no operands that could do anything first. */
function isTrapCall(e: Ref, traps: ReadonlySet<string>): boolean {
  if (binaryen.getExpressionId(e) !== binaryen.CallId || Expr.Call!.isReturn!(e)) return false;
  if (!traps.has(Expr.Call!.getTarget!(e) as string)) return false;
  return straightLineCalls(e) !== null;
}

/** The direct calls in e (callee names) if e is straight-line code: no branch, loop, return,
 *  trap or indirect call, so that once it starts it runs to its end (unless a call inside does
 *  not return); null otherwise. */
function straightLineCalls(e: Ref): string[] | null {
  const calls: string[] = [];
  let ok = true;
  walk(e, (x, id) => {
    switch (id) {
      case Ids.Call:
        if (Expr.Call!.isReturn!(x)) ok = false;
        else calls.push(Expr.Call!.getTarget!(x) as string);
        break;
      case Ids.Break: case Ids.Switch: case Ids.Loop: case Ids.Return: case Ids.CallIndirect:
      case Ids.Try: case Ids.Throw: case Ids.Rethrow:
        ok = false;
        break;
      default:
        if (id === binaryen.UnreachableId || id === binaryen.IfId) ok = false;
    }
  });
  return ok ? calls : null;
}

function directCallCounts(f: Ref): Map<string, number> {
  const out = new Map<string, number>();
  walk(binaryen.getFunctionInfo(f).body, (e, id) => {
    if (id !== Ids.Call) return;
    const t = Expr.Call!.getTarget!(e) as string;
    out.set(t, (out.get(t) ?? 0) + 1);
  });
  return out;
}
