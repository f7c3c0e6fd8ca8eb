// Post-pass on Asyncify's output: keep __asyncify_state in a local.
//
// Asyncify guards code in an instrumented function with many `if (global.get $state == ...)`
// tests; a small function called in a hot path pays for a memory load per test, and V8 cannot
// fold repeated tests because stores to other globals (the poll budget) may alias. The state can
// only change inside a call (the runtime functions that set it are never inlined into
// instrumented code), so each instrumented function reads it once at entry and again after each
// call that may change it, and the tests read the local. Identical tests then become identical
// SSA values that V8's branch elimination can fold.
import binaryen from 'binaryen';
import { Expr, Ids, walkSlots, type Ref, type Slot } from './walk.js';

export interface StateCacheResult { functions: number; reads: number }

/**
 * @param stateGlobal internal name of Asyncify's state global
 * @param mayChangeState whether a direct call to this function (or import) can change the state
 */
export function cacheAsyncifyState(m: binaryen.Module, stateGlobal: string, mayChangeState: (callee: string) => boolean): StateCacheResult {
  let functions = 0, reads = 0;
  for (let i = 0; i < m.getNumFunctions(); i++) {
    const ref = m.getFunctionByIndex(i);
    const info = binaryen.getFunctionInfo(ref);
    if (info.module) continue;
    const gets: Slot[] = [];
    const calls: { e: Ref; slot: Slot | null }[] = [];
    let writes = false;
    walkSlots(info.body, (e, id, slot) => {
      if (id === Ids.GlobalGet && Expr.GlobalGet!.getName!(e) === stateGlobal) {
        if (slot) gets.push(slot);
      } else if (id === Ids.GlobalSet && Expr.GlobalSet!.getName!(e) === stateGlobal) {
        writes = true;
      } else if (id === Ids.Call) {
        if (mayChangeState(Expr.Call!.getTarget!(e) as string)) calls.push({ e, slot });
      } else if (id === Ids.CallIndirect) {
        calls.push({ e, slot });
      }
    });
    // The runtime functions (asyncify_start_unwind, ...) set the state themselves: leave them.
    if (writes || gets.length === 0) continue;
    const addVar = (t: number): number =>
      (binaryen as unknown as { _BinaryenFunctionAddVar: (f: Ref, t: number) => number })._BinaryenFunctionAddVar(ref, t);
    const s = addVar(binaryen.i32);
    const temps = new Map<number, number>();
    const temp = (t: number): number => {
      let idx = temps.get(t);
      if (idx === undefined) { idx = addVar(t); temps.set(t, idx); }
      return idx;
    };
    for (const slot of gets) slot.set(m.local.get(s, binaryen.i32));
    const reload = (): Ref => m.local.set(s, m.global.get(stateGlobal, binaryen.i32));
    const setBody = (b: Ref): void => (binaryen as unknown as { Function: { setBody(f: Ref, b: Ref): void } }).Function.setBody(ref, b);
    for (const { e, slot } of calls) {
      const t = binaryen.getExpressionType(e);
      if (t === binaryen.unreachable) continue;
      const wrapped = t === binaryen.none ? m.block(null, [e, reload()], binaryen.none)
        : m.block(null, [m.local.set(temp(t), e), reload(), m.local.get(temp(t), t)], t);
      if (slot) slot.set(wrapped);
      else setBody(wrapped);
    }
    setBody(m.block(null, [reload(), binaryen.getFunctionInfo(ref).body], binaryen.auto));
    functions++;
    reads += gets.length;
  }
  return { functions, reads };
}
