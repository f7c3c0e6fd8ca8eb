// A program under checkpoint control, launched or restarted: its guest session, its
// checkpoints, and what asks for them — the control socket, the --interval timer, signals.
// The supervision is the same wherever the program runs (superviseSession): in a worker
// started from here (supervise), or on the main thread while a side thread supervises it
// (main-thread.ts, side.ts).
import { existsSync, mkdirSync, statSync } from 'node:fs';
import type * as net from 'node:net';
import { serve, type Handler, type Reply, type Request } from '../control/channel.js';
import { newKey, register, socketPath, unregister } from '../control/registry.js';
import { join, resolve } from 'node:path';
import { EXIT, StasisError } from '../errors.js';
import type { GuestResult } from '../engine/protocol.js';
import type { CopyCache } from '../files/capture.js';
import { JOURNAL_DIR, sealJournals, unseal } from '../files/journal.js';
import { IMAGES, type Codec } from '../image/format.js';
import type { GlobalValue } from '../image/schema.js';
import type { Checkpoints, CheckpointResult, CheckpointSetting } from './checkpoints.js';
import { guestInWorker, type GuestSession, type GuestSetup } from './session.js';
import { EXIT_CHECKPOINTED, exitProcess, onProcessSignals, type SignalSource } from './signals.js';
import { requeueAfterStop, slurmJob, WARNING_SIGNALS } from './slurm.js';

export interface ControlOptions {
  /** Where images go (default ./NAME.ckpt). */
  ckptDir?: string;
  /** Program name (default: module file name without .wasm). */
  name?: string;
  /** Checkpoint every this many seconds. */
  interval?: number;
  /** Keep this many latest images (default: all). */
  keep?: number;
  /** Don't print where the socket and images are. */
  quiet?: boolean;
  compress?: Codec;
  /** Testing aid: checkpoint at the program's Nth WASI call, then stop (exit 75). */
  checkpointAtCall?: number;
  /** --plugin modules (paths), run after Stasis's own file rules. */
  plugins?: string[];
  /** --path-map OLD=NEW host path prefixes (at restart: added to, or replacing, the launch's). */
  pathMap?: string[];
  /** --allow-file-overwrite: a saved file that differs at restart is replaced (and kept as a backup). */
  allowFileOverwrite?: boolean;
  /** --no-rollback: DMTCP's file rules exactly: no undo journal (a restart undoes nothing the
   *  program changed), open files classified by their offsets. At restart: nothing is rolled
   *  back, and the run goes on without a journal. */
  noRollback?: boolean;
  /** --rollback-exempt: paths (globs, as --ckpt-files) a restart never rolls back, with what is
   *  below them: outputs the user wants kept. Given at launch (kept in the image) or at restart. */
  rollbackExempt?: string[];
  /**
   * The launcher owns this process, as the CLI does: SIGTERM checkpoints and exits 75, other
   * terminating signals exit, and a stop (`kill`, `checkpoint --exit`) exits the process.
   * Default false, for applications that embed Stasis: no signal handlers are installed, and a
   * stop ends only the program, whose promise resolves with exit code 75 or 137.
   */
  ownProcess?: boolean;
}

export { EXIT_CHECKPOINTED };
/** Exit status of a program stopped by `stasis kill` (as SIGKILL would report it). */
export const EXIT_KILLED = 137;

/** The checkpoint directory, absolute, refused if something other than a directory is there
 *  (it is created later, when missing). */
export function checkpointDir(dir: string): string {
  const path = resolve(dir);
  const st = statSync(path, { throwIfNoEntry: false });
  if (st !== undefined && !st.isDirectory()) {
    const kind = st.isFile() ? 'a file' : st.isFIFO() ? 'a FIFO' : st.isCharacterDevice() || st.isBlockDevice() ? 'a device' : 'not a directory';
    throw new StasisError('USAGE', `--ckpt-dir ${dir}: ${path} is ${kind}; give a directory (it is created if missing)`);
  }
  return path;
}

export interface Supervised extends Omit<CheckpointSetting, 'keep' | 'compress'> {
  opts: ControlOptions;
  globals: Omit<GlobalValue, 'value'>[];
  setup: Omit<GuestSetup, 'checkpoint'>;
  /** For a restart: the image's generation (its changes from the start are journaled as
   *  that generation's: a later restart from the same image undoes them). */
  restartedFrom?: number;
  /** For a restart: called once the image is loaded and the program is about to run. */
  onRestored?: () => void;
  /** For a restart: saved files reopened identical to their copies (files/restore.ts), filled
   *  when its files are put in place. */
  unchanged?: CopyCache;
}

/** What supervising a running program needs, wherever it runs (not how to start it). */
export type Supervisor = Omit<Supervised, 'setup' | 'onRestored'> & { modulePath: string };

/** A run's start, as its supervisor needs it: the latest generation in its checkpoint directory
 *  then, and whether the run journals its changes. */
export interface RunStart {
  generation: number;
  journaled: boolean;
}

/** Before the program runs: its checkpoint directory made, the run's journals unsealed. */
export async function beginRun(s: Supervisor): Promise<RunStart> {
  mkdirSync(s.ckptDir, { recursive: true });
  // A new checkpoint directory has none to list (nor the image reader loaded: listing is
  // asynchronous, the thread pool's first use and turns of the event loop, on a launch's way to
  // its program).
  const images = existsSync(join(s.ckptDir, IMAGES)) ? await (await import('../image/read.js')).listImages(s.ckptDir) : [];
  const generation = Math.max(0, ...images.map((r) => r.generation));
  const journaled = s.policy.noRollback !== true;
  if (journaled) unseal(s.ckptDir);
  return { generation, journaled };
}

/** Once the program can change nothing more: what its journals name, as it left it. */
export function sealRun(s: Supervisor, run: RunStart): void {
  if (!run.journaled) return;
  try {
    sealJournals(s.ckptDir, s.restartedFrom ?? run.generation + 1);
  } catch (e) {
    process.stderr.write(`stasis: could not record the files' state for a later restart's conflict check (${(e as Error).message}); a restart will not tell another process's changes from the program's\n`);
  }
}

/** The guest's side of checkpoint control. */
export function checkpointSetup(s: Supervisor, run: RunStart): NonNullable<GuestSetup['checkpoint']> {
  return {
    ...s.engine, globals: s.globals,
    ...(run.journaled && { journal: { dir: join(s.ckptDir, JOURNAL_DIR), generation: s.restartedFrom ?? null } }),
    ...(s.opts.checkpointAtCall !== undefined && { checkpointAtCall: s.opts.checkpointAtCall }),
  };
}

/** Where `stasis checkpoint` and the others find the program: its registry entry, and the line
 *  saying so. Its control socket is listening by then. */
export function announce(s: Supervisor, key: string, socket: string): void {
  register(key, { name: s.name, pid: process.pid, socket, ckptDir: s.ckptDir, module: s.modulePath, startedAt: new Date().toISOString() });
  if (!s.opts.quiet) {
    process.stderr.write(`stasis: ${s.name} running (pid ${process.pid}); control socket ${socket}; images in ${s.ckptDir}\n`);
  }
}

/** The program in a worker, supervised from this thread (the API's arrangement; the CLI's
 *  without the native addon). */
export async function supervise(s: Supervised): Promise<GuestResult> {
  const sv = supervisor(s);
  const run = await beginRun(sv);
  const session = guestInWorker({ ...s.setup, module: await s.setup.module, checkpoint: checkpointSetup(sv, run) });
  if (s.onRestored !== undefined) void session.restored.then(s.onRestored);
  const key = newKey();
  const socket = socketPath(key);
  return superviseSession(sv, run, session, {
    key, socket,
    serve: (handler) => {
      const server = serve(socket, handler);
      announce(sv, key, socket);
      return server;
    },
    signals: onProcessSignals,
  });
}

export function supervisor(s: Supervised): Supervisor {
  const { setup, onRestored: _, ...rest } = s;
  return { ...rest, modulePath: setup.modulePath };
}

/** How the supervisor is reached and signalled where it runs. */
export interface Reach {
  /** The registry key and the control socket's path. */
  key: string;
  socket: string;
  /** Serves the control socket (and announces the program, if not done yet). */
  serve: (handler: Handler) => net.Server;
  /** Handles the process's terminating signals (signals.ts's SignalSource). */
  signals: SignalSource;
}

/** Supervises a running program: checkpoints on request (control socket), on a timer and on
 *  signals, until it ends or is stopped. */
export async function superviseSession(s: Supervisor, run: RunStart, session: GuestSession, reach: Reach): Promise<GuestResult> {
  const { opts } = s;
  // The checkpoint machinery (image writer, file capture: ~30 modules) loads now, while the
  // program's thread starts, not before: a checkpoint asked meanwhile waits for it.
  const checkpoints: Promise<Checkpoints> = import('./checkpoints.js').then((m) => new m.Checkpoints(session, {
    ...s, ...(opts.keep !== undefined && { keep: opts.keep }), ...(opts.compress !== undefined && { compress: opts.compress }),
  }, run.generation, s.unchanged));
  const { key, socket } = reach;

  // A Slurm job (slurm.ts): warning signals checkpoint, and a stop after a checkpoint requeues.
  const slurm = opts.ownProcess === true ? slurmJob() : null;
  let stopping = false;
  /** Ends the program (and the process, when it is ours) with `status`; once. */
  const stop = (status: number): void => {
    if (stopping) return;
    stopping = true;
    session.flush();
    // Stopped after a checkpoint: the program is held, it changes nothing more.
    if (status === EXIT_CHECKPOINTED) sealRun(s, run);
    unregister(key);
    // Last: Slurm ends the job's processes as soon as it requeues it.
    if (slurm !== null && status === EXIT_CHECKPOINTED) process.stderr.write(`stasis: ${requeueAfterStop(slurm)}\n`);
    if (opts.ownProcess === true) exitProcess(status);
    session.end(status);
  };
  // --checkpoint-at-call: the guest checkpointed by itself; save it and stop, as on SIGTERM.
  session.onUnrequested = (captured) => {
    checkpoints.then((c) => c.saveUnrequested(captured)).then(
      () => stop(EXIT_CHECKPOINTED),
      (e: Error) => {
        process.stderr.write(`stasis: checkpoint failed: ${e.message}\n`);
        stop(EXIT.INTERNAL);
      },
    );
  };

  const server = reach.serve(controlHandler(checkpoints, stop, () => ({ name: s.name, pid: process.pid, ckptDir: s.ckptDir, socket })));

  const interval = opts.interval !== undefined && opts.interval > 0
    ? setInterval(() => void checkpoints.then((c) => c.take()).catch((e: Error) => process.stderr.write(`stasis: periodic checkpoint failed: ${e.message}\n`)), opts.interval * 1000)
    : null;
  // SIGTERM (a scheduler's or a cloud VM's preemption notice): checkpoint, then stop. How long
  // it took is what a job's --signal or KillWait must leave: a scheduler's log always shows it.
  const report = (r: CheckpointResult, why: string): void => {
    if (opts.quiet && slurm === null) return;
    process.stderr.write(`stasis: checkpointed to ${r.image} on ${why} in ${(r.ms / 1000).toFixed(2)} s (${(r.bytesWritten / 2 ** 20).toFixed(1)} MiB written)\n`);
  };
  let terminating = false;
  const onTerm = (): void => {
    if (terminating || stopping) return; // Slurm signals every process of the job, maybe twice
    terminating = true;
    checkpoints.then((c) => c.take(true)).then(
      (r) => {
        report(r, 'SIGTERM');
        stop(EXIT_CHECKPOINTED);
      },
      (e: Error) => {
        process.stderr.write(`stasis: checkpoint on SIGTERM failed: ${e.message}\n`);
        stop(143);
      },
    );
  };
  // Slurm's warning (--signal=[B:]USR1@SECONDS): a checkpoint now, so that the one at the end
  // writes only what changed since; the program goes on.
  const onWarning = (sig: NodeJS.Signals) => (): void => {
    if (terminating || stopping) return;
    checkpoints.then((c) => {
      c.expectStop();
      return c.take();
    }).then((r) => report(r, `${sig} (Slurm's warning; the program goes on)`),
      (e: Error) => process.stderr.write(`stasis: checkpoint on ${sig} failed: ${e.message}\n`));
  };
  const warnings = Object.fromEntries((slurm === null ? [] : WARNING_SIGNALS).map((sig) => [sig, onWarning(sig)]));
  const removeSignals = opts.ownProcess === true ? reach.signals(stop, { SIGTERM: onTerm, ...warnings }) : () => {};
  try {
    const result = await session.result;
    if (!stopping && result.sealed !== true) sealRun(s, run); // the program ended by itself
    return result;
  } finally {
    void checkpoints.then((c) => c.dispose());
    if (interval) clearInterval(interval);
    removeSignals();
    server.close();
    unregister(key);
  }
}

/** Answers the control socket's requests (api.ts sends them). */
function controlHandler(loading: Promise<Checkpoints>, stop: (status: number) => void, who: () => Record<string, unknown>): (req: Request) => Promise<Reply> {
  return async (req) => {
    const checkpoints = await loading;
    switch (req.cmd) {
      case 'checkpoint': {
        try {
          const r = await checkpoints.take(req.exit === true);
          if (req.exit) setImmediate(() => stop(EXIT_CHECKPOINTED));
          return { ok: true, ...r };
        } catch (e) {
          // The guest was held for a checkpoint that could not be saved: end, reporting it.
          if (req.exit) setImmediate(() => stop(EXIT.INTERNAL));
          throw e;
        }
      }
      case 'status':
        return { ok: true, ...who(), generation: checkpoints.generation, captureReady: checkpoints.captureReady() };
      case 'kill':
        setImmediate(() => stop(EXIT_KILLED));
        return { ok: true };
    }
  };
}
