// `stasis restart`: a program continued from an image, in this process. Its files are put
// as the image's plan says (files/restore.ts), then it runs under supervision as if launched.
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { StasisError } from '../errors.js';
import type { GuestResult } from '../engine/protocol.js';
import { maxFrameBytes } from '../engine/stack.js';
import type { CopyCache } from '../files/capture.js';
import { emit, loadPlugins } from '../files/plugin.js';
import { builtinPolicy } from '../files/policy.js';
import { checkPathMap, mapPath, mergePathMaps, mountsOf, parsePathMap } from '../files/pathmap.js';
import { applyPlan, checkPlan, fileRecords, locationKey, physicalPath, planFiles, type FilePlan, type PlanOptions } from '../files/restore.js';
import { applyRollback, NO_ROLLBACK, planRollback, rollbackKeptDir, rollsBack, type RollbackPlan } from '../files/rollback.js';
import { readImage, verifyStored } from '../image/index.js';
import type { FilePolicyOptions, Snapshot } from '../image/schema.js';
import { guestPath, type Preopen } from '../wasi/state.js';
import type { CompileMode } from './compile.js';
import { progress } from './progress.js';
import { checkPreopens } from './run.js';
import { pauseForTest, stopEarlyOnSignals } from './signals.js';
import { checkpointDir, type ControlOptions } from './supervisor.js';
import { superviseProgram } from './main-thread.js';

export interface RestartOptions extends ControlOptions {
  /** An image directory, a checkpoint directory (its latest image), or an export file
   *  (`stasis export`; its checkpoints then go to ckptDir, default ./NAME.ckpt). */
  image: string;
  /** Preopens to remap: GUEST names must be ones the program had. */
  dirs: Preopen[];
  /** "KEY=VALUE" overrides of the saved environment. */
  env: string[];
  /** Default: V8's flags as they are. Process-wide, as RunOptions.compile. */
  compile?: CompileMode;
}

/** What a restart would do with each open file, checked; nothing is changed. */
export async function planRestart(opts: RestartOptions): Promise<{ lines: string[]; plan: FilePlan }> {
  const p = await prepareRestart(opts);
  return { lines: [...p.rollback.lines, ...p.plan.steps.map((s) => s.line)], plan: p.plan };
}

async function prepareRestart(opts: RestartOptions) {
  const image = await readImage(opts.image, { memory: false }); // the guest thread reads the memory
  // A file from elsewhere is checked whole before anything is done with it.
  if (image.source.kind === 'export') await verifyStored(image);
  const snap = image.snapshot;
  const saved: FilePolicyOptions = snap.filePolicy ?? { checkpointOpenFiles: false, allowFileOverwrite: false, rules: [], pathMap: [] };
  const restartMap = parsePathMap(opts.pathMap ?? [], 'restart');
  checkPathMap(restartMap, 'restart');
  const policy: FilePolicyOptions = {
    ...saved, pathMap: mergePathMaps(saved.pathMap, restartMap),
    allowFileOverwrite: saved.allowFileOverwrite || opts.allowFileOverwrite === true,
    ...((saved.noRollback === true || opts.noRollback === true) && { noRollback: true }),
    ...((saved.rollbackExempt !== undefined || opts.rollbackExempt !== undefined) && { rollbackExempt: [...saved.rollbackExempt ?? [], ...opts.rollbackExempt ?? []] }),
  };
  if (!image.ours) {
    // An image from elsewhere could name any host directory: the program gets only those given here.
    const ungiven = snap.wasi.preopens.filter((p) => !opts.dirs.some((d) => d.guest === p.guest) && mapPath(restartMap, p.host) === p.host);
    if (ungiven.length > 0) {
      throw new StasisError('FILE_ACCESS', `${image.ref.path} was not written by your Stasis here (it may come from elsewhere), so the host directories it names are not given to the program: check them and give each with --dir, e.g. ${ungiven.map((p) => `--dir ${p.host}::${p.guest}`).join(' ')}`);
    }
  }
  const where: PlanOptions = { saved: snap.wasi.preopens, dirs: opts.dirs, pathMap: policy.pathMap, allowOverwrite: opts.allowFileOverwrite === true };
  const physical = remapPreopens(snap.wasi.preopens, opts.dirs, (p) => physicalPath(where, { preopen: p.guest, rel: '' })!);
  // What the program changed since the checkpoint is undone first (files/rollback.ts).
  const copied = fileRecords(snap).filter((r) => r.treatment === 'save' && !r.deleted).map((r) => r.restartPath ?? physicalPath(where, r.location)!);
  // (An export file carries no journal: its program's files are not here to undo; nor is a
  // journal beside an image from elsewhere trusted to say what to change.)
  const plugins = [...builtinPolicy(policy), ...await loadPlugins(opts.plugins ?? [])];
  // The journals name the directories where the run had them: after its own --path-map.
  const roots = snap.wasi.preopens.map((p) => ({ guest: p.guest, was: mapPath(saved.pathMap, p.host), now: physicalPath(where, { preopen: p.guest, rel: '' })! }));
  const rollback = opts.noRollback === true || image.source.kind === 'export' || !image.ours
    ? NO_ROLLBACK
    : await planRollback(image.ref.dir, image.ref.generation, roots, { saved: copied, plugins, allowOverwrite: policy.allowFileOverwrite });
  checkOtherFds(snap, where, rollback);
  const plan = planFiles(snap, where, (p) => rollsBack(rollback, p));
  // Files a rule moved stay where they were put for later checkpoints of this run.
  where.moved = new Map(plan.steps.filter((st) => st.record.restartPath !== undefined).map((st) => [locationKey(st.record.location), st.target]));
  return { image, snap, policy, physical, plan, where, rollback, plugins };
}

export async function restart(opts: RestartOptions): Promise<GuestResult> {
  if (opts.ownProcess === true) stopEarlyOnSignals();
  if (opts.ckptDir !== undefined) checkpointDir(opts.ckptDir);
  const { image, snap, policy, physical, plan: planned, where, rollback, plugins } = await prepareRestart(opts);
  checkPlan(planned);
  await pauseForTest('restart');
  const name = opts.name ?? snap.meta.name;
  // An image's own directory goes on receiving its checkpoints; an export file's go where a
  // launch of the program would put them.
  const fromExport = image.source.kind === 'export';
  const ckptDir = checkpointDir(opts.ckptDir ?? (fromExport ? `${name}.ckpt` : image.ref.dir));
  if (fromExport && !opts.quiet) {
    process.stderr.write(`stasis: restarting ${name} from export ${image.ref.path} (generation ${image.ref.generation}); its checkpoints go to ${ckptDir}${opts.ckptDir === undefined ? ' (choose with --ckpt-dir)' : ''}\n`);
  }
  const env = mergeEnv(snap.wasi.env, opts.env);
  // A progress line (on a terminal, after a second) until the program runs again: the memory
  // read and checked in the guest's thread, then the files put in place.
  let restored = (): void => {};
  let failed = (_e: unknown): void => {};
  void progress(`restarting from ${image.ref.path}`, () => new Promise<void>((ok, fail) => { restored = ok; failed = fail; }))
    .catch(() => {});
  try {
    // Saved files found identical to their copies, for the checkpoints of this run: filled
    // when the files are put in place, before the program runs.
    const unchanged: CopyCache = new Map();
    // Only once the guest has read and checked the image's memory: a damaged image changes nothing.
    const putFiles = async (): Promise<[number, number][]> => {
      let rolledBack: string[];
      try {
        rolledBack = applyRollback(rollback, rollbackKeptDir(image.ref.dir, image.ref.generation));
      } catch (e) {
        const err = e as NodeJS.ErrnoException;
        if (e instanceof StasisError || typeof err.code !== 'string') throw e;
        const swapped = err.code === 'ELOOP' || err.code === 'ENOTDIR' || err.code === 'EXDEV';
        if (swapped) throw new StasisError('FILE_ACCESS', `restart stopped: during the rollback, a directory on the way to ${err.path ?? 'a file'} was replaced (by a symbolic link or a file); nothing was changed through it; what was undone so far is kept in ${join(image.ref.dir, 'kept')}; put the directory back and restart again (the rollback goes on where it stopped)`);
        throw new StasisError('FILE_ACCESS', `restart stopped: the rollback could not change ${err.path ?? 'a file'} (${err.code}); what it undid so far is kept in ${join(image.ref.dir, 'kept')}; fix it and restart again (the rollback goes on where it stopped), or restart with --no-rollback`);
      }
      for (const line of rolledBack) process.stderr.write(`stasis: ${line}\n`);
      // Planned again on the files as the rollback left them, and checked again.
      const plan = rollback.touched.size === 0 ? planned : planFiles(snap, where);
      checkPlan(plan);
      let applied;
      try {
        applied = applyPlan(plan, snap, image.source, fromExport ? ckptDir : image.ref.dir);
      } catch (e) {
        const err = e as NodeJS.ErrnoException;
        if (e instanceof StasisError || typeof err.code !== 'string') throw e;
        // The tree changed under the restart (a directory swapped for a link, a file removed).
        throw new StasisError('FILE_ACCESS', `restart stopped while putting the program's files in place: ${err.code === 'ELOOP' || err.code === 'ENOTDIR' ? 'a directory on the way was replaced (by a symbolic link or a file)' : err.code}${err.path ? ` (${err.path})` : ''}; files already put back stay so, and what was replaced is in ${join(fromExport ? ckptDir : image.ref.dir, 'kept')}`);
      }
      for (const line of applied.kept) process.stderr.write(`stasis: ${line}\n`);
      for (const [key, copy] of applied.unchanged) unchanged.set(key, copy);
      await emit(plugins, 'onRestart', { image: image.ref.path, generation: image.ref.generation, plan: plan.steps.map((s) => s.line) });
      return applied.handles;
    };
    const restore = {
      image: { path: image.ref.path, generation: image.ref.generation }, globals: snap.globals, asyncifyData: snap.asyncifyData,
      fds: snap.wasi.fds, monotonicNs: snap.monotonicNs, stdinPending: snap.stdinPending,
      ...(snap.wasi.pollDeadlines && { pollDeadlines: snap.wasi.pollDeadlines }),
      putFiles,
    };
    let module: WebAssembly.Module;
    try {
      module = new WebAssembly.Module(image.moduleBytes as Uint8Array<ArrayBuffer>);
    } catch (e) {
      throw new StasisError('BAD_IMAGE', `${image.ref.path}: stored module does not compile: ${(e as Error).message}`);
    }
    return await superviseProgram({
      name, ckptDir, opts,
      moduleBytes: image.moduleBytes, moduleHash: snap.moduleHash, instrumentedHash: snap.instrumentedHash,
      engine: { ...snap.engine, maxFrameBytes: snap.engine.maxFrameBytes ?? maxFrameBytes(image.moduleBytes), endingGate: snap.engine.endingGate ?? null },
      globals: snap.globals.map(({ name, type }) => ({ name, type })),
      policy, plugins, where,
      setup: {
        module, modulePath: snap.wasi.args[0] ?? snap.meta.name, args: snap.wasi.args, env,
        preopens: physical, mounts: mountsOf(policy.pathMap, snap.wasi.preopens), restore,
        ...(opts.compile && { compile: opts.compile }),
      },
      onRestored: () => restored(),
      // Journaled as the image's generation only where its own later images go: in another
      // checkpoint directory the journal starts with the first checkpoint there.
      ...(!fromExport && resolve(ckptDir) === resolve(image.ref.dir) && { restartedFrom: image.ref.generation }),
      unchanged,
    });
  } catch (e) {
    failed(e);
    throw e;
  } finally {
    restored(); // settled already, unless the program ended before it ran
  }
}

/**
 * The preopens' host directories at restart (--dir NEWHOST::GUEST, else the saved one
 * through --path-map); each must exist.
 */
function remapPreopens(saved: Preopen[], dirs: Preopen[], where: (p: Preopen) => string): Preopen[] {
  for (const d of dirs) {
    if (!saved.some((p) => p.guest === d.guest)) {
      throw new StasisError('USAGE', `--dir ${d.host}::${d.guest}: the program has no directory ${d.guest} (it has ${saved.map((p) => p.guest).join(', ') || 'none'})`);
    }
  }
  const merged = saved.map((p) => ({ guest: p.guest, host: where(p) }));
  for (const p of merged) {
    if (!existsSync(p.host)) {
      throw new StasisError('BAD_DIR', `directory ${p.host} (the program's ${p.guest}) is missing; restore it, or give --dir NEWHOST::${p.guest} or --path-map ${p.host}=NEWHOST`);
    }
  }
  return checkPreopens(merged);
}

/**
 * Directories the program had open (other than preopens), and files that have no record
 * (devices, pipes opened by path), must still be there.
 */
function checkOtherFds(snap: Snapshot, where: PlanOptions, rollback: RollbackPlan): void {
  const recorded = new Set(fileRecords(snap).flatMap((r) => r.fds));
  for (const f of snap.wasi.fds) {
    if (f.kind === 'stdio' || recorded.has(f.fd) || (f.kind === 'dir' && f.location.rel === '')) continue;
    const host = physicalPath(where, f.location);
    if (host !== null && (existsSync(host) || rollsBack(rollback, host))) continue;
    throw new StasisError('MISSING_FILE', `the program had ${f.kind === 'dir' ? 'the directory ' : ''}${guestPath(f.location)} open (fd ${f.fd}), but ${host ?? 'its preopen'} is missing; put it back, or map it with --path-map or --dir NEWHOST::${f.location.preopen}`);
  }
}

function mergeEnv(saved: string[], overrides: string[]): string[] {
  const env = new Map(saved.map((kv) => [kv.slice(0, kv.indexOf('=')), kv] as const));
  for (const kv of overrides) env.set(kv.slice(0, kv.indexOf('=')), kv);
  return [...env.values()];
}
