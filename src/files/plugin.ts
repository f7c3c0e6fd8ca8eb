// The plugin interface: code that runs at checkpoint and restart events and decides, per open
// file, what a checkpoint does with it. Stasis's own file rules (policy.ts) are written
// against this interface; `--plugin ./p.js` adds more after them.
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { FileTreatment } from '../image/schema.js';
import { StasisError } from '../errors.js';
import { checkRegularFile, unreadable } from '../util/fs.js';
import { importModule } from '../util/import.js';

/** An open regular file as a plugin sees it at a checkpoint (the program is paused). */
export interface OpenFile {
  /** Host path (as launched, before --path-map); for a deleted file, the path it had. */
  readonly path: string;
  /** The path the program uses for it (preopen name + path below it). */
  readonly guestPath: string;
  /** The program's fds on it. */
  readonly fds: readonly number[];
  /** Some fd on it may write. */
  readonly writable: boolean;
  /** Every writable fd on it is in append mode. */
  readonly append: boolean;
  /** Every writable fd not in append mode is at the end of the file. */
  readonly atEnd: boolean;
  /** How the program has written it in this run, as its host saw: only at its end ('append'),
   *  or over existing bytes or truncating them ('overwrite'); absent if it has not written it
   *  (or wrote it only before a restart). */
  readonly written?: 'append' | 'overwrite';
  readonly size: number;
  /** Permission bits. */
  readonly mode: number;
  /** Unlinked while open (or renamed where no preopen reaches). */
  readonly deleted: boolean;
}

/** What to do with a file; every field but treatment may be left out. */
export interface FileDecision {
  treatment: FileTreatment;
  /** Why: shown by `restart --dry-run` and `inspect`. */
  reason: string;
  /** A saved file that exists and differs at restart: 'refuse' the restart or 'replace' it (kept as a backup). */
  onDiffer: 'refuse' | 'replace';
  /** Host path to use at restart instead of its old one. */
  restartPath?: string;
}

/** A path the program changed after the checkpoint a restart goes back to. */
export interface ChangedPath {
  /** Host path, where the program's directory is now (after --dir). */
  readonly path: string;
  /** Host path as the program's run named it (before --dir at restart). */
  readonly launchPath: string;
  /** The path the program uses for it (preopen name + path below it). */
  readonly guestPath: string;
  /** What the program did to it since the checkpoint. */
  readonly changes: readonly ('created' | 'removed' | 'renamed' | 'contents' | 'times')[];
}

/** Whether a restart undoes the program's changes to a path. */
export interface RollbackDecision {
  rollback: boolean;
  /** Why: shown by `restart --dry-run` for a path left as it is. */
  reason: string;
}

export interface CheckpointEvent {
  /** The program's name and checkpoint directory. */
  name: string;
  ckptDir: string;
}

export interface CheckpointedEvent extends CheckpointEvent {
  /** The image written (durable) and its generation. */
  image: string;
  generation: number;
  /** Whether the program goes on (false: it stops after this checkpoint). */
  resumed: boolean;
}

export interface RestartEvent {
  /** The image being restarted. */
  image: string;
  generation: number;
  /** One line per file, as `restart --dry-run` prints them. */
  plan: readonly string[];
}

/**
 * A Stasis plugin: a module whose default export is one of these (or an array of them).
 * Hooks may be async; decideFile runs while the program is paused, so keep it quick.
 */
export interface StasisPlugin {
  name: string;
  /** Before the program is asked to pause for a checkpoint. */
  beforeCheckpoint?(e: CheckpointEvent): void | Promise<void>;
  /**
   * Decides one open file. Gets the decision so far (Stasis's rules, then earlier plugins);
   * returns a new one, or nothing to keep it.
   */
  decideFile?(file: OpenFile, proposed: FileDecision): FileDecision | void | Promise<FileDecision | void>;
  /**
   * At restart, before any file changes: whether the program's changes to one path since the
   * checkpoint are undone (the default) or left as they are (an output nothing re-reads).
   * Gets the decision so far; returns a new one, or nothing to keep it. Both names of a
   * rename are left as they are if either is.
   */
  decideRollback?(path: ChangedPath, proposed: RollbackDecision): RollbackDecision | void | Promise<RollbackDecision | void>;
  /** After the image is durable (and the program has resumed, unless it is stopping). */
  afterCheckpoint?(e: CheckpointedEvent): void | Promise<void>;
  /** At restart, once the files are in place and before the program continues. */
  onRestart?(e: RestartEvent): void | Promise<void>;
}

/** Runs every plugin's decideFile in order, starting from `initial`. */
export async function decide(plugins: readonly StasisPlugin[], file: OpenFile, initial: FileDecision): Promise<FileDecision> {
  let d = initial;
  for (const p of plugins) {
    if (p.decideFile === undefined) continue;
    let next: FileDecision | void;
    try {
      next = await p.decideFile(file, d);
    } catch (e) {
      throw new StasisError('BAD_CONFIG', `plugin ${p.name}: decideFile failed for ${file.path}: ${(e as Error).message}`);
    }
    if (next === undefined || next === null) continue;
    if (!['reopen', 'log', 'save'].includes(next.treatment)) {
      throw new StasisError('BAD_CONFIG', `plugin ${p.name}: decideFile returned treatment ${JSON.stringify(next.treatment)} for ${file.path}; expected reopen, log or save`);
    }
    d = { ...d, ...next, reason: next.reason || `plugin ${p.name}` };
  }
  return d;
}

/** Runs every plugin's decideRollback in order, starting from rolling back. */
export async function decideRollback(plugins: readonly StasisPlugin[], path: ChangedPath): Promise<RollbackDecision> {
  let d: RollbackDecision = { rollback: true, reason: 'changed after the checkpoint' };
  for (const p of plugins) {
    if (p.decideRollback === undefined) continue;
    let next: RollbackDecision | void;
    try {
      next = await p.decideRollback(path, d);
    } catch (e) {
      throw new StasisError('BAD_CONFIG', `plugin ${p.name}: decideRollback failed for ${path.path}: ${(e as Error).message}`);
    }
    if (next === undefined || next === null) continue;
    if (typeof next.rollback !== 'boolean') {
      throw new StasisError('BAD_CONFIG', `plugin ${p.name}: decideRollback returned rollback ${JSON.stringify(next.rollback)} for ${path.path}; expected true or false`);
    }
    d = { rollback: next.rollback, reason: next.reason || `plugin ${p.name}` };
  }
  return d;
}

/** Runs one event hook of every plugin, in order. */
export async function emit<K extends 'beforeCheckpoint' | 'afterCheckpoint' | 'onRestart'>(
  plugins: readonly StasisPlugin[], hook: K, event: Parameters<NonNullable<StasisPlugin[K]>>[0],
): Promise<void> {
  for (const p of plugins) {
    const f = p[hook] as ((e: typeof event) => void | Promise<void>) | undefined;
    if (f === undefined) continue;
    try {
      await f.call(p, event);
    } catch (e) {
      throw new StasisError('BAD_CONFIG', `plugin ${p.name}: ${hook} failed: ${(e as Error).message}`);
    }
  }
}

/** Loads `--plugin` modules (paths relative to the current directory). */
export async function loadPlugins(specs: readonly string[]): Promise<StasisPlugin[]> {
  const out: StasisPlugin[] = [];
  for (const spec of specs) {
    const path = resolve(spec);
    try {
      checkRegularFile(path); // import() would hang on a FIFO, or read a device forever
    } catch (e) {
      throw new StasisError('BAD_CONFIG', `--plugin ${spec}: cannot load ${path}: ${unreadable(e)}`);
    }
    let mod: { default?: unknown };
    try {
      mod = (await importModule(pathToFileURL(path).href)) as { default?: unknown };
    } catch (e) {
      const why = (e as NodeJS.ErrnoException).code === 'ERR_MODULE_NOT_FOUND' ? 'not found' : (e as Error).message.split('\n')[0];
      throw new StasisError('BAD_CONFIG', `--plugin ${spec}: cannot load ${path}: ${why}`);
    }
    const list = Array.isArray(mod.default) ? mod.default : [mod.default];
    for (const p of list) {
      if (typeof p !== 'object' || p === null || typeof (p as StasisPlugin).name !== 'string') {
        throw new StasisError('BAD_CONFIG', `--plugin ${spec}: its default export must be a plugin object with a name (see docs/plugins.md)`);
      }
      out.push(p as StasisPlugin);
    }
  }
  return out;
}
