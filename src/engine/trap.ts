// A trap, as the one line the CLI prints for it.

/** "unreachable executed in function 'main' (prog.wasm)": the message and first wasm frame.
 *  Anything that is not a trap (a host bug) is thrown on. */
export function describeTrap(e: unknown, modulePath: string): string {
  if (!(e instanceof WebAssembly.RuntimeError) && !(e instanceof RangeError)) throw e;
  const frame = (e.stack ?? '').split('\n').find((l) => l.includes('wasm://') || l.includes('wasm-function'));
  let where = '';
  if (frame !== undefined) {
    const named = /at (\S+) \(wasm:/.exec(frame);
    const index = /wasm-function\[(\d+)\]/.exec(frame);
    if (named) where = ` in function '${named[1]}'`;
    else if (index) where = ` in function #${index[1]} (module has no name section)`;
  }
  return `trap: ${e.message}${where} (${modulePath})`;
}
