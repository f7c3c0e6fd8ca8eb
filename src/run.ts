// `stasis run`: runs a WASI command to completion. The guest runs in a worker thread; this
// thread flushes the guest's coalesced writes once they go stale and on fatal signals.
import { statSync } from 'node:fs';
import { resolve } from 'node:path';
import { Worker } from 'node:worker_threads';
import { StasisError } from './errors.js';
import type { GuestData, GuestResult } from './guest.js';
import { loadModule } from './module.js';
import type { Preopen } from './wasi/state.js';
import { StdinPump, stdinChannel, stdinIsFile } from './wasi/stdin.js';
import { WriteBehind } from './wasi/writebehind.js';

export interface RunOptions {
  /** Path of the .wasm file. */
  module: string;
  /** Arguments after the module; argv[0] is the module path as given. */
  args: string[];
  /** "KEY=VALUE" strings. */
  env: string[];
  preopens: Preopen[];
}

export type RunResult = GuestResult;

/** How often buffered writes are checked for staleness. */
const FLUSH_INTERVAL_MS = 5;

/** Checks that every preopen's host directory exists before anything runs. */
export function checkPreopens(preopens: Preopen[]): Preopen[] {
  return preopens.map((p) => {
    let st;
    try {
      st = statSync(p.host);
    } catch {
      throw new StasisError('BAD_DIR', `--dir ${p.host}: no such directory; create it or fix the path`);
    }
    if (!st.isDirectory()) throw new StasisError('BAD_DIR', `--dir ${p.host}: not a directory`);
    return { guest: p.guest, host: resolve(p.host) };
  });
}

export async function runCommand(opts: RunOptions): Promise<RunResult> {
  const loaded = loadModule(opts.module);
  const writeBehind = new WriteBehind();
  const stdin = stdinIsFile() ? null : stdinChannel();
  const data: GuestData = {
    module: loaded.module, modulePath: opts.module, args: [opts.module, ...opts.args],
    env: opts.env, preopens: checkPreopens(opts.preopens), writeBehind: writeBehind.shared, stdin,
  };
  if (stdin !== null) new StdinPump(stdin).start();
  const worker = new Worker(new URL('./guest.js', import.meta.url), {
    workerData: { kind: 'guest', data }, stdin: false, stdout: false, stderr: false,
  });

  // Flush a burst of small writes once no new one has come for a tick.
  let lastSeq = writeBehind.sequence();
  const timer = setInterval(() => {
    const seq = writeBehind.sequence();
    if (seq === lastSeq && writeBehind.pending) writeBehind.flush();
    lastSeq = seq;
  }, FLUSH_INTERVAL_MS);

  // A signal ends the program as it would a native one, but nothing it wrote is lost.
  const onSignal = (signal: NodeJS.Signals, status: number) => () => {
    writeBehind.flush();
    process.exit(status);
  };
  const handlers = new Map<NodeJS.Signals, () => void>([
    ['SIGINT', onSignal('SIGINT', 130)], ['SIGTERM', onSignal('SIGTERM', 143)], ['SIGHUP', onSignal('SIGHUP', 129)],
  ]);
  for (const [sig, h] of handlers) process.on(sig, h);

  try {
    return await new Promise<RunResult>((resolveRun, reject) => {
      worker.once('message', (r: GuestResult) => resolveRun(r));
      worker.once('error', reject);
      worker.once('exit', (code) => reject(new StasisError('INTERNAL', `guest thread exited (${code}) without a result`)));
    });
  } finally {
    clearInterval(timer);
    for (const [sig, h] of handlers) process.off(sig, h);
    writeBehind.flush();
    // Not awaited: a stdin reader thread blocked in read(2) cannot be stopped; the CLI exits.
    void worker.terminate();
  }
}
