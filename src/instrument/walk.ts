// Walking Binaryen IR from JavaScript. binaryen.js has no generic child iterator, and a walk over
// the fields of getExpressionInfo() trips on numeric fields (Const.value, Load.offset, lane
// indexes), so every expression kind we accept names its children explicitly here. A kind not
// listed is one a wasm32-wasi C/C++/Rust program does not use (GC, strings, stack switching):
// the walker reports it and the instrumenter refuses the module.
import binaryen from 'binaryen';

export type Ref = number;

// The static accessors (binaryen.Block.getChildAt, ...) exist at run time but are not in index.d.ts.
interface Accessors { [k: string]: (e: Ref, i?: number) => Ref | number | boolean | string }
const A = binaryen as unknown as Record<string, Accessors>;
interface Shape { kind: string; fields: string[]; list?: { one: string; count: string } }
const SHAPES = new Map<number, Shape>();
const I = binaryen as unknown as Record<string, number>;
function def(name: string, fields: string[] = [], list?: string): void {
  const id = I[`${name}Id`];
  if (id === undefined) return;
  const count = list === 'Child' ? 'Children' : list === 'CatchBody' ? 'CatchBodies' : `${list}s`;
  SHAPES.set(id, { kind: name, fields, ...(list ? { list: { one: list, count } } : {}) });
}
def('Block', [], 'Child');
def('If', ['Condition', 'IfTrue', 'IfFalse']);
def('Loop', ['Body']);
def('Break', ['Condition', 'Value']);
def('Switch', ['Condition', 'Value']);
def('Call', [], 'Operand');
def('CallIndirect', ['Target'], 'Operand');
def('LocalGet');
def('LocalSet', ['Value']);
def('GlobalGet');
def('GlobalSet', ['Value']);
def('Load', ['Ptr']);
def('Store', ['Ptr', 'Value']);
def('Const');
def('Unary', ['Value']);
def('Binary', ['Left', 'Right']);
def('Select', ['IfTrue', 'IfFalse', 'Condition']);
def('Drop', ['Value']);
def('Return', ['Value']);
def('MemorySize');
def('MemoryGrow', ['Delta']);
def('Nop');
def('Unreachable');
def('AtomicRMW', ['Ptr', 'Value']);
def('AtomicCmpxchg', ['Ptr', 'Expected', 'Replacement']);
def('AtomicWait', ['Ptr', 'Expected', 'Timeout']);
def('AtomicNotify', ['Ptr', 'NotifyCount']);
def('AtomicFence');
def('SIMDExtract', ['Vec']);
def('SIMDReplace', ['Vec', 'Value']);
def('SIMDShuffle', ['Left', 'Right']);
def('SIMDTernary', ['A', 'B', 'C']);
def('SIMDShift', ['Vec', 'Shift']);
def('SIMDLoad', ['Ptr']);
def('SIMDLoadStoreLane', ['Ptr', 'Vec']);
def('MemoryInit', ['Dest', 'Offset', 'Size']);
def('DataDrop');
def('MemoryCopy', ['Dest', 'Source', 'Size']);
def('MemoryFill', ['Dest', 'Value', 'Size']);
def('RefNull');
def('RefIsNull', ['Value']);
def('RefAs', ['Value']);
def('RefFunc');
def('RefEq', ['Left', 'Right']);
def('TableGet', ['Index']);
def('TableSet', ['Index', 'Value']);
def('TableSize');
def('TableGrow', ['Value', 'Delta']);
def('Try', ['Body'], 'CatchBody');
def('Throw', [], 'Operand');
def('Rethrow');
def('TupleMake', [], 'Operand');
def('TupleExtract', ['Tuple']);
def('Pop');

/** A child slot: how to read and replace one child of a parent expression. */
export interface Slot { parent: Ref; get(): Ref; set(child: Ref): void }

function slotsOf(e: Ref, id: number, out: Slot[]): void {
  const shape = SHAPES.get(id);
  if (!shape) throw new UnknownExpressionError(id);
  const acc = A[shape.kind]!;
  for (const f of shape.fields) {
    out.push({ parent: e, get: () => acc[`get${f}`]!(e) as Ref, set: (c) => { acc[`set${f}`]!(e, c as unknown as number); } });
  }
  if (shape.list) {
    const { one, count } = shape.list;
    const n = acc[`getNum${count}`]!(e) as number;
    for (let i = 0; i < n; i++) {
      out.push({ parent: e, get: () => acc[`get${one}At`]!(e, i) as Ref, set: (c) => { (acc[`set${one}At`] as unknown as (e: Ref, i: number, c: Ref) => void)(e, i, c); } });
    }
  }
}

/** Children in the order the shape lists them (for Break: condition before value). */
export function childrenOf(e: Ref, id: number, out: Ref[]): void {
  const shape = SHAPES.get(id);
  if (!shape) throw new UnknownExpressionError(id);
  const acc = A[shape.kind]!;
  for (const f of shape.fields) out.push(acc[`get${f}`]!(e) as Ref);
  if (shape.list) {
    const n = acc[`getNum${shape.list.count}`]!(e) as number;
    for (let i = 0; i < n; i++) out.push(acc[`get${shape.list.one}At`]!(e, i) as Ref);
  }
}

/** Names of expression ids, for messages. */
export function expressionKind(id: number): string {
  for (const [k, v] of Object.entries(I)) if (v === id && k.endsWith('Id') && !k.startsWith('_')) return k.slice(0, -2);
  return `expression #${id}`;
}

export class UnknownExpressionError extends Error {
  constructor(readonly id: number) { super(`unsupported instruction kind ${expressionKind(id)}`); }
}

/** Calls visit(e, id) for every expression under root, parents before children (pre-order).
 *  Iterative, so deep expression trees do not overflow the JS stack. */
export function walk(root: Ref, visit: (e: Ref, id: number) => void): void {
  if (!root) return;
  const stack: Ref[] = [root];
  const kids: Ref[] = [];
  while (stack.length > 0) {
    const e = stack.pop()!;
    const id = binaryen.getExpressionId(e);
    visit(e, id);
    kids.length = 0;
    childrenOf(e, id, kids);
    for (let i = kids.length - 1; i >= 0; i--) if (kids[i]) stack.push(kids[i]!);
  }
}

/** Pre-order walk that also gives each expression the slot it sits in (null for the root), so a
 *  visitor can record where to splice in a replacement later. Mutating the tree during the walk
 *  is not supported: collect, then replace. */
export function walkSlots(root: Ref, visit: (e: Ref, id: number, slot: Slot | null) => void): void {
  if (!root) return;
  const stack: { e: Ref; slot: Slot | null }[] = [{ e: root, slot: null }];
  const slots: Slot[] = [];
  while (stack.length > 0) {
    const { e, slot } = stack.pop()!;
    const id = binaryen.getExpressionId(e);
    visit(e, id, slot);
    slots.length = 0;
    slotsOf(e, id, slots);
    for (let i = slots.length - 1; i >= 0; i--) {
      const s = slots[i]!;
      const c = s.get();
      if (c) stack.push({ e: c, slot: s });
    }
  }
}

export const Ids = {
  Block: I.BlockId!, Loop: I.LoopId!, Break: I.BreakId!, Switch: I.SwitchId!, Call: I.CallId!,
  CallIndirect: I.CallIndirectId!, Try: I.TryId!, Throw: I.ThrowId!, Rethrow: I.RethrowId!,
  TableSet: I.TableSetId!, TableGrow: I.TableGrowId!, RefFunc: I.RefFuncId!, Return: I.ReturnId!,
  AtomicWait: I.AtomicWaitId!, AtomicNotify: I.AtomicNotifyId!, GlobalGet: I.GlobalGetId!,
  GlobalSet: I.GlobalSetId!, LocalSet: I.LocalSetId!, LocalGet: I.LocalGetId!,
} as const;

export const Expr = A;
