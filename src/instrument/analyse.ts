// Module vetting and whole-module analysis for the instrumenter: what we refuse, the call graph
// (call_indirect resolved by signature against the table), loops, and the set of functions that
// can be on the stack when an unwind starts.
import binaryen from 'binaryen';
import { WASI_FUNCTIONS } from '../wasi/signatures.js';
import { WASI_MODULE } from './abi.js';
import { UnsupportedModuleError } from './errors.js';
import { Expr, Ids, UnknownExpressionError, walk, type Ref } from './walk.js';

export { UnsupportedModuleError };

/** Imports a checkpoint never unwinds at: start-up and exit. Keeps crt1's start-up uninstrumented. */
export const NON_UNWINDING_WASI = new Set([
  'args_get', 'args_sizes_get', 'environ_get', 'environ_sizes_get', 'fd_prestat_get',
  'fd_prestat_dir_name', 'proc_exit',
]);

export interface FuncInfo {
  name: string;
  ref: Ref;
  imported: boolean;
  module: string | null;
  base: string | null;
  /** "params/results" type key, to resolve call_indirect. */
  sig: string;
  calls: Set<string>;
  indirectSigs: Set<string>;
  loops: Ref[];
}

export interface ModuleAnalysis {
  funcs: Map<string, FuncInfo>;
  /** Defined functions in module order. */
  defined: FuncInfo[];
  /** Function names that call_indirect may reach, per signature key. */
  indirectTargets: Map<string, string[]>;
  /** Every label name used in the module (blocks, loops, try), to make fresh ones. */
  labels: Set<string>;
}

export const sigKey = (params: number, results: number): string => `${params}/${results}`;

/** Refuses what the instrumenter or Asyncify cannot handle. Runs before any transformation. */
export function vetModule(m: binaryen.Module): void {
  const exports: binaryen.ExportInfo[] = [];
  for (let i = 0; i < m.getNumExports(); i++) exports.push(binaryen.getExportInfo(m.getExportByIndex(i)));

  // Threads: shared memory, or the wasi-threads entry points.
  if (m.hasMemory() && m.getMemoryInfo().shared) {
    throw new UnsupportedModuleError('the module uses shared memory (threads); Stasis checkpoints single-threaded programs only');
  }
  for (let i = 0; i < m.getNumFunctions(); i++) {
    const f = binaryen.getFunctionInfo(m.getFunctionByIndex(i));
    if (f.module === 'wasi' && f.base === 'thread-spawn') {
      throw new UnsupportedModuleError('the module imports wasi.thread-spawn (wasi-threads); Stasis checkpoints single-threaded programs only');
    }
  }
  if (exports.some((e) => e.name === 'wasi_thread_start')) {
    throw new UnsupportedModuleError('the module exports wasi_thread_start (wasi-threads); Stasis checkpoints single-threaded programs only');
  }

  // Already asyncified: a second Asyncify would collide with the first.
  const asyncified = exports.find((e) => e.name.startsWith('asyncify_'));
  if (asyncified) {
    throw new UnsupportedModuleError(`the module is already instrumented with Asyncify (it exports ${asyncified.name}); pass the original, uninstrumented module`);
  }
  for (let i = 0; i < m.getNumGlobals(); i++) {
    const g = binaryen.getGlobalInfo(m.getGlobalByIndex(i));
    if (g.module === 'asyncify' || g.name === '__asyncify_state' || g.name === '__asyncify_data') {
      throw new UnsupportedModuleError(`the module is already instrumented with Asyncify (it has global ${g.module ? `${g.module}.${g.base}` : g.name}); pass the original, uninstrumented module`);
    }
  }

  // Imports: only WASI preview-1 functions.
  for (let i = 0; i < m.getNumFunctions(); i++) {
    const f = binaryen.getFunctionInfo(m.getFunctionByIndex(i));
    if (!f.module) continue;
    if (f.module === 'asyncify') {
      throw new UnsupportedModuleError(`the module imports asyncify.${f.base}: it is already built for Asyncify; pass a plain WASI module`);
    }
    if (f.module !== WASI_MODULE || !WASI_FUNCTIONS.has(f.base ?? '')) {
      throw new UnsupportedModuleError(`the module imports function ${f.module}.${f.base}; Stasis instruments WASI preview-1 programs whose only imports are wasi_snapshot_preview1 functions`);
    }
  }
  for (let i = 0; i < m.getNumGlobals(); i++) {
    const g = binaryen.getGlobalInfo(m.getGlobalByIndex(i));
    if (g.module) throw new UnsupportedModuleError(`the module imports global ${g.module}.${g.base}; only wasi_snapshot_preview1 function imports are supported`);
  }
  for (let i = 0; i < m.getNumTables(); i++) {
    const t = binaryen.getTableInfo(m.getTableByIndex(i));
    if (t.module) throw new UnsupportedModuleError(`the module imports table ${t.module}.${t.base}; only wasi_snapshot_preview1 function imports are supported`);
  }
  if (m.hasMemory()) {
    const mem = m.getMemoryInfo();
    if (mem.module) throw new UnsupportedModuleError(`the module imports its memory (${mem.module}.${mem.base}); Stasis needs a module that defines and exports its memory`);
    if (mem.is64) throw new UnsupportedModuleError('the module uses 64-bit memory (memory64); Stasis supports wasm32 only');
  }

  // Memory must be exported (the host reads/writes it, the snapshot saves it).
  if (!m.hasMemory() || !exports.some((e) => e.kind === binaryen.ExternalMemory)) {
    throw new UnsupportedModuleError('the module exports no memory; a WASI command must export "memory"');
  }
  if (m.getStart()) {
    throw new UnsupportedModuleError('the module has a start section, which would run again at every restart');
  }
}

/** Walks every defined function: call graph, loops, labels; refuses tail calls, exception
 *  handling and reference-typed locals. */
export function analyseModule(m: binaryen.Module): ModuleAnalysis {
  const funcs = new Map<string, FuncInfo>();
  const defined: FuncInfo[] = [];
  const labels = new Set<string>();
  let tableMutated = false;
  const okLocal = new Set<number>([binaryen.i32, binaryen.i64, binaryen.f32, binaryen.f64, binaryen.v128]);

  for (let i = 0; i < m.getNumFunctions(); i++) {
    const ref = m.getFunctionByIndex(i);
    const info = binaryen.getFunctionInfo(ref);
    const f: FuncInfo = {
      name: info.name, ref, imported: !!info.module, module: info.module || null, base: info.base || null,
      sig: sigKey(info.params, info.results), calls: new Set(), indirectSigs: new Set(), loops: [],
    };
    funcs.set(f.name, f);
    if (f.imported) continue;
    defined.push(f);
    for (const t of [...binaryen.expandType(info.params), ...info.vars]) {
      if (!okLocal.has(t)) {
        throw new UnsupportedModuleError(`function ${f.name} has a reference-typed local or parameter, which Asyncify cannot save`);
      }
    }
    for (const t of binaryen.expandType(info.results)) {
      if (!okLocal.has(t)) throw new UnsupportedModuleError(`function ${f.name} returns a reference type, which Asyncify cannot handle`);
    }
    try {
      walk(info.body, (e, id) => {
        switch (id) {
          case Ids.Call: {
            if (Expr.Call!.isReturn!(e)) throw new UnsupportedModuleError(`function ${f.name} uses tail calls (return_call), which Asyncify cannot instrument`);
            f.calls.add(Expr.Call!.getTarget!(e) as string);
            break;
          }
          case Ids.CallIndirect: {
            if (Expr.CallIndirect!.isReturn!(e)) throw new UnsupportedModuleError(`function ${f.name} uses tail calls (return_call_indirect), which Asyncify cannot instrument`);
            f.indirectSigs.add(sigKey(Expr.CallIndirect!.getParams!(e) as number, Expr.CallIndirect!.getResults!(e) as number));
            break;
          }
          case Ids.Loop:
            f.loops.push(e);
            labels.add(Expr.Loop!.getName!(e) as string);
            break;
          case Ids.Block: {
            const n = Expr.Block!.getName!(e) as string | null;
            if (n) labels.add(n);
            break;
          }
          case Ids.Try: case Ids.Throw: case Ids.Rethrow:
            throw new UnsupportedModuleError(`function ${f.name} uses exception handling (try/throw), which Stasis does not checkpoint`);
          case Ids.TableSet: case Ids.TableGrow:
            tableMutated = true;
            break;
        }
      });
    } catch (err) {
      if (err instanceof UnknownExpressionError) {
        throw new UnsupportedModuleError(`function ${f.name} uses ${err.message.replace('unsupported instruction kind ', '')} instructions, which Stasis does not support`);
      }
      throw err;
    }
  }

  // call_indirect targets: the functions placed in tables by element segments, matched by
  // signature (a mismatch traps). If a table can change at run time (table.set/grow, or it is
  // exported), any function of that signature might be called.
  for (let i = 0; i < m.getNumExports(); i++) {
    if (binaryen.getExportInfo(m.getExportByIndex(i)).kind === binaryen.ExternalTable) tableMutated = true;
  }
  const inTables: string[] = [];
  if (tableMutated) {
    inTables.push(...funcs.keys());
  } else {
    for (let i = 0; i < m.getNumElementSegments(); i++) {
      inTables.push(...binaryen.getElementSegmentInfo(m.getElementSegmentByIndex(i)).data);
    }
  }
  const indirectTargets = new Map<string, string[]>();
  for (const name of new Set(inTables)) {
    const f = funcs.get(name);
    if (!f) continue;
    const list = indirectTargets.get(f.sig) ?? [];
    list.push(name);
    indirectTargets.set(f.sig, list);
  }
  return { funcs, defined, indirectTargets, labels };
}

/** Callees of f (direct, and indirect by signature). */
export function callees(a: ModuleAnalysis, f: FuncInfo): string[] {
  const out = [...f.calls];
  for (const s of f.indirectSigs) out.push(...(a.indirectTargets.get(s) ?? []));
  return out;
}

/** The call graph among defined functions, by position in `a.defined`: each function's
 *  callees (direct, then indirect by signature, as `callees` lists them), each once. Built once
 *  per search: the greedy search below recomputes the components of a shrinking set many times
 *  (168 rounds on SQLite's component of 1023 functions). */
interface CallGraph { names: string[]; succ: Int32Array[]; selfLoop: Uint8Array }

function callGraph(a: ModuleAnalysis): CallGraph {
  const names = a.defined.map((f) => f.name);
  const index = new Map(names.map((n, i) => [n, i]));
  const selfLoop = new Uint8Array(names.length);
  const succ = a.defined.map((f, v) => {
    const out: number[] = [];
    const seen = new Set<number>();
    for (const c of callees(a, f)) {
      const w = index.get(c);
      if (w === undefined || seen.has(w)) continue;
      seen.add(w);
      out.push(w);
      if (w === v) selfLoop[v] = 1;
    }
    return Int32Array.from(out);
  });
  return { names, succ, selfLoop };
}

/** Strongly connected components of the call graph among defined functions (Tarjan, iterative).
 *  Returns the components that contain a cycle (size > 1, or a function calling itself). */
export function cyclicComponents(a: ModuleAnalysis, restrictTo?: Set<string>): string[][] {
  const g = callGraph(a);
  let nodes = g.names.map((_, i) => i);
  let member: Uint8Array | null = null;
  if (restrictTo) {
    const index = new Map(g.names.map((n, i) => [n, i]));
    nodes = [...restrictTo].flatMap((n) => index.get(n) ?? []);
    member = new Uint8Array(g.names.length);
    for (const v of nodes) member[v] = 1;
  }
  return components(g, nodes, member).map((c) => c.map((v) => g.names[v]!));
}

/** Tarjan's algorithm from `nodes` (in order) over the subgraph of `member` (null: all). */
function components(g: CallGraph, nodes: Iterable<number>, member: Uint8Array | null): number[][] {
  const n = g.names.length;
  const index = new Int32Array(n).fill(-1);
  const low = new Int32Array(n);
  const onStack = new Uint8Array(n);
  const stack: number[] = [];
  const result: number[][] = [];
  let next = 0;
  const work: { v: number; i: number }[] = [];
  const open = (v: number): void => {
    index[v] = low[v] = next++;
    stack.push(v); onStack[v] = 1;
    work.push({ v, i: 0 });
  };
  for (const root of nodes) {
    if (index[root]! >= 0) continue;
    open(root);
    while (work.length > 0) {
      const top = work[work.length - 1]!;
      const outs = g.succ[top.v]!;
      if (top.i < outs.length) {
        const w = outs[top.i++]!;
        if (member !== null && member[w] === 0) continue;
        if (index[w]! < 0) open(w);
        else if (onStack[w]) low[top.v] = Math.min(low[top.v]!, index[w]!);
        continue;
      }
      work.pop();
      if (work.length > 0) {
        const parent = work[work.length - 1]!;
        low[parent.v] = Math.min(low[parent.v]!, low[top.v]!);
      }
      if (low[top.v] === index[top.v]) {
        const comp: number[] = [];
        let w: number;
        do { w = stack.pop()!; onStack[w] = 0; comp.push(w); } while (w !== top.v);
        if (comp.length > 1 || g.selfLoop[comp[0]!]) result.push(comp);
      }
    }
  }
  return result;
}

/** A small set of functions that meets every call-graph cycle (greedy feedback vertex set):
 *  a poll at the entry of each of them bounds the calls made between two polls. */
export function cycleBreakers(a: ModuleAnalysis): Set<string> {
  const g = callGraph(a);
  const n = g.names.length;
  const chosen = new Set<string>();
  const inComp = new Uint8Array(n);
  const indeg = new Int32Array(n);
  let comps = components(g, g.names.map((_, i) => i), null);
  while (comps.length > 0) {
    const rest: number[] = [];
    for (const comp of comps) {
      if (comp.length > GREEDY_MAX) {
        for (const v of backEdgeHeads(g, comp)) chosen.add(g.names[v]!);
        continue;
      }
      for (const v of comp) inComp[v] = 1;
      for (const v of comp) for (const w of g.succ[v]!) if (inComp[w]) indeg[w]++;
      // A self-recursive function must be chosen; otherwise take the one with most in*out edges.
      let best = comp[0]!;
      let bestScore = -1;
      for (const v of comp) {
        let outs = 0;
        for (const w of g.succ[v]!) if (inComp[w]) outs++;
        const score = g.selfLoop[v] ? Infinity : outs * indeg[v]!;
        if (score > bestScore) { best = v; bestScore = score; }
      }
      for (const v of comp) { inComp[v] = 0; indeg[v] = 0; }
      chosen.add(g.names[best]!);
      for (const v of comp) if (v !== best) rest.push(v);
    }
    if (rest.length === 0) break;
    const member = new Uint8Array(n);
    for (const v of rest) member[v] = 1;
    comps = components(g, rest, member);
  }
  return chosen;
}

/** Components bigger than this get backEdgeHeads: the greedy choice recomputes the components
 *  after each choice, quadratic on the one of tens of thousands of functions that virtual calls
 *  make in a big C++ program (hours for a 30 MB module). */
const GREEDY_MAX = 2000;

/** A feedback vertex set of a component in linear time: the targets of the back edges of a
 *  depth-first search (every cycle has one). Searching from the best-connected functions first
 *  makes them the ancestors that most back edges point to. */
function backEdgeHeads(g: CallGraph, comp: number[]): Set<number> {
  const inComp = new Set(comp);
  const succ = new Map<number, number[]>();
  const indeg = new Map<number, number>();
  for (const v of comp) {
    const outs = [...g.succ[v]!].filter((w) => inComp.has(w));
    succ.set(v, outs);
    for (const w of outs) indeg.set(w, (indeg.get(w) ?? 0) + 1);
  }
  const score = (v: number): number => succ.get(v)!.length * (indeg.get(v) ?? 0);
  const name = (v: number): string => g.names[v]!;
  const roots = [...comp].sort((x, y) => score(y) - score(x) || (name(x) < name(y) ? -1 : name(x) > name(y) ? 1 : 0));
  const heads = new Set<number>();
  const state = new Map<number, 1 | 2>(); // 1: on the search path, 2: done
  for (const root of roots) {
    if (state.has(root)) continue;
    const work: { v: number; i: number }[] = [{ v: root, i: 0 }];
    state.set(root, 1);
    while (work.length > 0) {
      const top = work[work.length - 1]!;
      const outs = succ.get(top.v)!;
      if (top.i < outs.length) {
        const w = outs[top.i++]!;
        const s = state.get(w);
        if (s === 1) heads.add(w);
        else if (s === undefined) { state.set(w, 1); work.push({ v: w, i: 0 }); }
        continue;
      }
      state.set(top.v, 2);
      work.pop();
    }
  }
  return heads;
}

/** Functions that can reach (call, directly or through a signature-matched indirect call)
 *  one of `roots`, roots included. An indirect call is followed once per signature, not once
 *  per (caller, table function) pair: in a big C++ program those pairs number in the millions. */
export function reachingSet(a: ModuleAnalysis, roots: Set<string>): Set<string> {
  const push = (m: Map<string, string[]>, k: string, v: string): void => {
    const list = m.get(k);
    if (list === undefined) m.set(k, [v]);
    else list.push(v);
  };
  const callers = new Map<string, string[]>();
  const indirectCallers = new Map<string, string[]>(); // signature -> functions with a call_indirect of it
  for (const f of a.defined) {
    for (const c of f.calls) push(callers, c, f.name);
    for (const s of f.indirectSigs) push(indirectCallers, s, f.name);
  }
  const tableSig = new Map<string, string>(); // function in a table -> its signature
  for (const [sig, targets] of a.indirectTargets) for (const t of targets) tableSig.set(t, sig);
  const out = new Set(roots);
  const work = [...roots];
  const sigsDone = new Set<string>();
  const reach = (c: string): void => {
    if (!out.has(c)) { out.add(c); work.push(c); }
  };
  while (work.length > 0) {
    const v = work.pop()!;
    for (const c of callers.get(v) ?? []) reach(c);
    const sig = tableSig.get(v);
    if (sig !== undefined && !sigsDone.has(sig)) {
      sigsDone.add(sig);
      for (const c of indirectCallers.get(sig) ?? []) reach(c);
    }
  }
  return out;
}

/** Functions that can be on the stack when an unwind starts: the defined functions that can
 *  reach an unwinding import. */
export function unwindingFunctions(a: ModuleAnalysis, unwindingImports: Set<string>): Set<string> {
  const out = reachingSet(a, unwindingImports);
  for (const i of unwindingImports) out.delete(i);
  return out;
}
