// The programmatic API: what the `stasis` CLI is built on, for applications that embed Stasis.
//
//   import { launch, checkpoint, restart, inspect } from 'stasis';
//   const done = launch({ module: 'prog.wasm', args: [], env: [], preopens: [], ckptDir: 'ck' });
//   const { image } = await checkpoint('prog');           // by name, pid or checkpoint dir
//   ...later, in another process: await restart({ image: 'ck', dirs: [], env: [] });
import { request, type Reply } from './control/channel.js';
import { entries, findTarget, type Entry } from './control/registry.js';
import { StasisError } from './errors.js';
import type { CheckpointResult } from './launcher/checkpoints.js';
import { inspectImage, listImages, verifyImage, type ImageRef, type ImageSummary, type Verified } from './image/index.js';

export { launch } from './launcher/launch.js';
export { instrumentCommand as instrument } from './launcher/instrumented.js';
export { restart, planRestart } from './launcher/restart.js';
export { exportImage } from './launcher/export.js';
export type { ExportOptions, ExportResult } from './launcher/export.js';
export { resume } from './launcher/resume.js';
export { EXIT_CHECKPOINTED, EXIT_KILLED } from './launcher/supervisor.js';
export type { StasisPlugin, OpenFile, FileDecision, CheckpointEvent, CheckpointedEvent, RestartEvent, ChangedPath, RollbackDecision } from './files/plugin.js';
export type { LaunchOptions } from './launcher/launch.js';
export type { RestartOptions } from './launcher/restart.js';
export type { ResumeOptions } from './launcher/resume.js';
export type { ControlOptions } from './launcher/supervisor.js';
export { runCommand as run } from './launcher/run.js';
export type { RunOptions } from './launcher/run.js';
export type { CompileMode } from './launcher/compile.js';
export type { GuestResult as RunResult } from './engine/protocol.js';
export { StasisError, EXIT } from './errors.js';
export type { CheckpointResult };
export type { Snapshot } from './image/schema.js';
export type { ImageSummary } from './image/index.js';

function ok(r: Reply, what: string): Extract<Reply, { ok: true }> {
  if (!r.ok) throw new StasisError('CONTROL', `${what} failed: ${r.error}`);
  return r;
}

/** Checkpoints a launched program; resolves once the image is durable. */
export async function checkpoint(target?: string, opts: { exit?: boolean } = {}): Promise<CheckpointResult> {
  const t = findTarget(target);
  const r = ok(await request(t.socket, { cmd: 'checkpoint', exit: opts.exit === true }), `checkpoint of ${t.name} (pid ${t.pid})`);
  const { ok: _ok, ...result } = r;
  return result as unknown as CheckpointResult;
}

export interface ProgramStatus extends Entry {
  /** Images written so far in its checkpoint directory (null if it did not answer). */
  generation: number | null;
  /** False while the launcher is still preparing the buffer the next capture copies memory into
   *  (for a few seconds after the program's memory grew past 64 MiB): a checkpoint requested
   *  then waits for it. Null if it did not answer. */
  captureReady: boolean | null;
}

/** Launched programs (all, or the one TARGET names). */
export async function status(target?: string): Promise<ProgramStatus[]> {
  const list = target === undefined ? entries() : [findTarget(target)];
  return Promise.all(list.map(async (e) => {
    const r = await request(e.socket, { cmd: 'status' }, 5000).catch(() => null);
    return { ...e, generation: r?.ok ? (r.generation as number) : null, captureReady: r?.ok ? (r.captureReady as boolean) : null };
  }));
}

/** Stops a launched program without a checkpoint. */
export async function kill(target?: string): Promise<void> {
  const t = findTarget(target);
  ok(await request(t.socket, { cmd: 'kill' }), `kill of ${t.name}`);
}

/** Checks a whole image as a restart would before changing anything; throws StasisError (73, 72...) at the first problem. */
export async function verify(path: string): Promise<Verified> {
  return verifyImage(path);
}

/** What an image (a checkpoint directory's latest, an image directory, or an export file) holds, without loading memory. */
export async function inspect(path: string): Promise<ImageSummary> {
  return inspectImage(path);
}

/** The complete images in a checkpoint directory, oldest first. */
export async function images(ckptDir: string): Promise<ImageRef[]> {
  return listImages(ckptDir);
}
