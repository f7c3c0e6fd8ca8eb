// The side thread's entry: it supervises a program that runs on the main thread
// (main-thread.ts), as the main thread supervises one in a worker (supervisor.ts's
// superviseSession). The main thread hands it the run as its first message.
import { parentPort, workerData, type MessagePort } from 'node:worker_threads';
import { serve } from '../control/channel.js';
import { EXIT } from '../errors.js';
import { loadPlugins } from '../files/plugin.js';
import { builtinPolicy } from '../files/policy.js';
import { writeAllSync } from '../util/fs.js';
import { GuestSession, type SessionLink } from './session.js';
import { exitProcess, onForwardedSignals, pauseForTest } from './signals.js';
import { superviseSession, type RunStart, type Supervisor } from './supervisor.js';
import { SIDE_WORKER } from './threads.js';

/** The run, from the main thread. */
export interface SideData {
  supervisor: Omit<Supervisor, 'plugins'>;
  run: RunStart;
  link: SessionLink;
  /** The program's messages (engine/protocol.ts GuestMessage). */
  guest: MessagePort;
  /** The registry key, and the control socket: its path and its fd, listening already. */
  key: string;
  socket: string;
  fd: number;
}

async function superviseFromSide(d: SideData): Promise<void> {
  const { policy, opts } = d.supervisor;
  const s: Supervisor = { ...d.supervisor, plugins: [...builtinPolicy(policy), ...await loadPlugins(opts.plugins ?? [])] };
  await pauseForTest('side');
  await superviseSession(s, d.run, new GuestSession(d.link, d.guest), {
    key: d.key, socket: d.socket, serve: (handler) => serve(d.socket, handler, d.fd), signals: onForwardedSignals,
  });
}

if (parentPort !== null && workerData?.kind === SIDE_WORKER) {
  // A worker's process.stdout and stderr go through the main thread's event loop, which does not
  // turn while the program computes: what this thread says is written directly.
  for (const [stream, fd] of [[process.stdout, 1], [process.stderr, 2]] as const) {
    stream.write = ((chunk: string | Uint8Array, encoding?: unknown, done?: unknown): boolean => {
      writeAllSync(fd, typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
      const cb = typeof encoding === 'function' ? encoding : done;
      if (typeof cb === 'function') process.nextTick(cb as () => void);
      return true;
    }) as typeof stream.write;
  }
  // Without this thread the program would run on unsupervised, deaf to SIGTERM: a failure here
  // ends the process.
  const fail = (e: unknown): void => {
    process.stderr.write(`stasis: internal error in the supervising thread: ${(e as Error).stack ?? String(e)}\n`);
    exitProcess(EXIT.INTERNAL);
  };
  process.on('uncaughtException', fail);
  parentPort.once('message', (d: SideData) => void superviseFromSide(d).catch(fail));
}
