// Rollback tests' runs: a program launched on a fresh directory (its /data), checkpointed at
// its first pause, continued to its second, and killed there (or let finish); and the same
// program run to the end in one process, to compare with.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stasis, stasisBin, tempDir, tree } from './helpers.js';

/** Makes dir with these files (paths below it) in it. */
function fill(dir: string, files: Record<string, string>): void {
  mkdirSync(dir);
  for (const [k, v] of Object.entries(files)) {
    mkdirSync(join(dir, k, '..'), { recursive: true });
    writeFileSync(join(dir, k), v);
  }
}

export interface Run {
  /** The launcher's output up to and including its first pause (the checkpoint). */
  before: string;
  root: string;
  data: string;
  ckpt: string;
  cleanup: () => void;
}

export interface RunHow {
  /** Called once the checkpoint is durable, the program still paused. */
  atCheckpoint?: (data: string) => void;
  /** Let the program run to its end (exit 0) instead of killing the launcher at its second pause. */
  finish?: boolean;
  /** Stop it there with SIGTERM instead (a second checkpoint, exit 75). */
  term?: boolean;
  /** Files to put in its directory before the launch. */
  files?: Record<string, string>;
  /** The host directory given with --dir (default: its directory). */
  given?: (root: string, data: string) => string;
  /** The launcher's environment (default: this process's). */
  env?: NodeJS.ProcessEnv;
  /** Kill the launcher (SIGKILL) once its stderr says this, instead of at the second pause. */
  killAt?: string;
}

/**
 * Launches PROG on a fresh directory, checkpoints it at its first pause, lets it go on to its
 * second pause, and kills the launcher there (SIGKILL).
 */
export async function checkpointContinueKill(prog: string, args: (data: string) => string[], launchOptions: string[] | ((root: string, data: string) => string[]) = [], ckptParent?: string, how: RunHow = {}): Promise<Run> {
  const { dir, cleanup: cleanupData } = tempDir();
  const other = ckptParent === undefined ? null : mkdtempSync(join(ckptParent, 'stasis-test-ckpt-'));
  const cleanup = (): void => {
    cleanupData();
    if (other !== null) rmSync(other, { recursive: true, force: true });
  };
  const data = join(dir, 'data');
  const ckpt = join(other ?? dir, 'ckpt');
  fill(data, how.files ?? {});
  const given = how.given?.(dir, data) ?? data;
  const options = typeof launchOptions === 'function' ? launchOptions(dir, data) : launchOptions;
  const name = `rollback-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  const child = spawn(process.execPath, [stasisBin, 'launch', '--quiet', '--name', name, '--ckpt-dir', ckpt,
    '--dir', `${given}::/data`, ...options, prog, ...args('/data')], { stdio: ['pipe', 'pipe', 'pipe'], cwd: dir, env: how.env ?? process.env });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const closed = new Promise<void>((resolve) => child.on('close', () => resolve()));
  const paused = async (n: number): Promise<void> => {
    while (out.split('paused\n').length - 1 < n) {
      if (child.exitCode !== null) assert.fail(`launch ended (${child.exitCode}) before pausing: ${out}${err}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  try {
    await paused(1);
    const before = out;
    const cp = stasis(['checkpoint', '--json', name]);
    assert.equal(cp.code, 0, cp.stderr + err);
    how.atCheckpoint?.(data);
    child.stdin.write('go\n');
    if (how.killAt !== undefined) {
      while (!err.includes(how.killAt)) {
        if (child.exitCode !== null) assert.fail(`launch ended (${child.exitCode}) before "${how.killAt}": ${out}${err}`);
        await new Promise((r) => setTimeout(r, 20));
      }
      child.kill('SIGKILL');
      await closed;
      return { before, root: dir, data, ckpt, cleanup };
    }
    await paused(2);
    if (how.finish === true) {
      child.stdin.end('go\n');
      await closed;
      assert.equal(child.exitCode, 0, out + err);
    } else if (how.term === true) {
      child.kill('SIGTERM');
      await closed;
      assert.equal(child.exitCode, 75, out + err);
    } else {
      child.kill('SIGKILL');
      await closed;
    }
    return { before, root: dir, data, ckpt, cleanup };
  } catch (e) {
    child.kill('SIGKILL');
    cleanup();
    throw e;
  }
}

/** The same program run to the end in one process: its output and its directory. */
export function uninterrupted(prog: string, args: (data: string) => string[], files: Record<string, string> = {}): { out: string; tree: Map<string, string> } {
  const { dir, cleanup } = tempDir();
  try {
    const data = join(dir, 'data');
    fill(data, files);
    const r = stasis(['run', '--dir', `${data}::/data`, prog, ...args('/data')], { input: 'go\ngo\n' });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    return { out: r.stdout, tree: tree(data) };
  } finally {
    cleanup();
  }
}

/** Restart and check it finishes as one uninterrupted run (`ref`: uninterrupted's). */
export function restartMatches(r: Run, ref: { out: string; tree: Map<string, string> }, extra: string[] = []): void {
  const x = stasis(['restart', '--quiet', ...extra, r.ckpt], { input: 'go\ngo\n', cwd: r.root });
  assert.equal(r.before + x.stdout, ref.out, `exit ${x.code}\n${x.stderr}`);
  assert.equal(x.code, 0, x.stderr);
  assert.deepEqual(tree(r.data), ref.tree);
}

/** The common case: launched, checkpointed, continued, killed, restarted: it finishes as one uninterrupted run. */
export async function restartsAsOneRun(prog: string, args: (data: string) => string[], files: Record<string, string> = {}): Promise<void> {
  const ref = uninterrupted(prog, args, files);
  const run = await checkpointContinueKill(prog, args, [], undefined, { files });
  try {
    restartMatches(run, ref);
  } finally {
    run.cleanup();
  }
}
