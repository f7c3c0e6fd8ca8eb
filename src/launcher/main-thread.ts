// The CLI's `launch` and `restart` with the native addon: the program runs on this (the main)
// thread as soon as it is ready, as `run`'s does, and a side thread (side.ts), started just
// before, supervises it: control socket, checkpoints, --interval, signals, flushing of
// coalesced writes. A worker takes tens of ms to start, which a program in one would wait for;
// the side thread's start-up is on no one's way (an empty program ends before it is needed). What must exist before the program runs is made here, synchronously: the
// control socket listening (its connections wait for the side thread), the registry entry,
// and the native handling of signals, which the side thread receives (Node gives a worker no
// signals, and no JavaScript handler runs on a thread that computes).
import { MessageChannel } from 'node:worker_threads';
import { newKey, socketPath, unregister } from '../control/registry.js';
import { ImageError, StasisError } from '../errors.js';
import { runProgram, type Post } from '../engine/program.js';
import type { GuestResult } from '../engine/protocol.js';
import { writeAllSync } from '../util/fs.js';
import { nativeInline } from '../wasi/native.js';
import { openLink } from './session.js';
import type { SideData } from './side.js';
import { forwardSignals } from './signals.js';
import { slurmJob, WARNING_SIGNALS } from './slurm.js';
import { announce, beginRun, checkpointSetup, sealRun, supervise, supervisor, type ControlOptions, type Supervised } from './supervisor.js';
import { SIDE_WORKER, takeThread } from './threads.js';

/** Whether a program of these options runs on the main thread (bin/stasis.js decides alike,
 *  before any of this loads, not to start a guest thread early). */
export function onMainThread(opts: ControlOptions): boolean {
  return opts.ownProcess === true && nativeInline !== null;
}

/** Supervises a program: on the main thread when it fits (onMainThread), else in a worker. */
export async function superviseProgram(s: Supervised): Promise<GuestResult> {
  return onMainThread(s.opts) ? superviseOnMainThread(s) : supervise(s);
}

async function superviseOnMainThread(s: Supervised): Promise<GuestResult> {
  const native = nativeInline!;
  // From here on the side thread gets the signals. One Node caught just before is handled now,
  // as before any program ran (stopEarlyOnSignals): nothing is registered or changed yet.
  forwardSignals(slurmJob() === null ? [] : WARNING_SIGNALS);
  await new Promise<void>((resolve) => setImmediate(resolve));
  const sv = supervisor(s);
  const run = await beginRun(sv);
  const { program, link } = openLink({ ...s.setup, checkpoint: checkpointSetup(sv, run) }, { pollIn: native.pollIn });
  const key = newKey();
  const socket = socketPath(key);
  const fd = native.listenUnix(socket);
  if (fd < 0) throw new StasisError('INTERNAL', `cannot make the control socket ${socket} (errno ${-fd})`);
  try {
    announce(sv, key, socket);
    const side = takeThread(SIDE_WORKER);
    side.on('error', () => {}); // it reports its own failure, and ends the process (side.ts)
    // What it wrote before its writes went to the file descriptors directly.
    for (const [stream, fd] of [[side.stdout, 1], [side.stderr, 2]] as const) stream.on('data', (chunk: Buffer) => writeAllSync(fd, chunk));
    const guest = new MessageChannel();
    const post: Post = (m, transfer) => {
      if (m.type === 'restored') s.onRestored?.();
      guest.port1.postMessage(m, transfer);
    };
    // Plugins are loaded again there (functions do not cross threads); a restart's copies of
    // saved files are known once its files are in place.
    const handOver = (): void => {
      const { plugins: _, ...supervised } = sv;
      const data: SideData = { supervisor: supervised, run, link, guest: guest.port2, key, socket, fd };
      // The instrumented module's bytes (for the images) are moved, not copied on this thread's
      // way to the program (tens of ms for a big one), when they are a buffer of their own: this
      // thread has compiled them and needs them no more.
      const bytes = sv.moduleBytes;
      const own = bytes.buffer instanceof ArrayBuffer && bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength;
      side.postMessage(data, [link.spares!, link.guards!, guest.port2, ...own ? [bytes.buffer as ArrayBuffer] : []]);
    };
    const restore = program.restore;
    if (restore === undefined) handOver();
    else program.restore = { ...restore, putFiles: () => restore.putFiles().then((handles) => (handOver(), handles)) };
    const result = await runProgram(program, post);
    if (result.imageError !== undefined) throw new ImageError(result.imageError.reason, result.imageError.message);
    if (result.sealed !== true) sealRun(sv, run); // the program ended by itself
    return result;
  } finally {
    unregister(key); // the entry and the socket
  }
}
