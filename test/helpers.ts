// Shared helpers for end-to-end tests: they drive the real CLI in a child process.
import { spawnSync, type SpawnSyncOptions } from 'node:child_process';
import { lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Repository root (tests run from dist/test/, two levels below it). */
export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const stasisBin = join(repoRoot, 'bin', 'stasis.js');

/** Absolute path of a built fixture: test/fixtures/wasm/NAME.wasm */
export function fixture(name: string): string {
  return join(repoRoot, 'test', 'fixtures', 'wasm', `${name}.wasm`);
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  stdoutBytes: Buffer;
}

/** Runs `stasis ARGS...` synchronously and collects its output. */
export function stasis(args: string[], opts: SpawnSyncOptions = {}): RunResult {
  const r = spawnSync(process.execPath, [stasisBin, ...args], {
    timeout: 60_000,
    maxBuffer: 256 * 1024 * 1024,
    ...opts,
  });
  if (r.error) throw r.error;
  const out = r.stdout as Buffer;
  return {
    code: r.status,
    signal: r.signal,
    stdout: out.toString('utf8'),
    stderr: (r.stderr as Buffer).toString('utf8'),
    stdoutBytes: out,
  };
}

/** A fresh temporary directory, removed by the returned cleanup function. */
export function tempDir(prefix = 'stasis-test-'): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** A small file system of its own (a tmpfs of `size`, e.g. '40m'; needs root), to fill up;
 *  null, with the test skipped and why, where it cannot be mounted. */
export function smallFs(t: { skip(why: string): void }, size: string): { dir: string; cleanup: () => void } | null {
  const { dir, cleanup } = tempDir();
  const mnt = join(dir, 'small');
  mkdirSync(mnt);
  const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', mnt]);
  if (mounted.status !== 0) {
    cleanup();
    t.skip(`cannot mount a small tmpfs here (${String(mounted.stderr).trim() || 'not root'})`);
    return null;
  }
  return {
    dir: mnt,
    cleanup: () => {
      spawnSync('umount', [mnt]);
      cleanup();
    },
  };
}

/** Every file and directory below dir: contents (files), mode and kind, by relative path. */
export function tree(dir: string, prefix = ''): Map<string, string> {
  const out = new Map<string, string>();
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    const st = lstatSync(p);
    const mode = (st.mode & 0o7777).toString(8);
    if (st.isDirectory()) {
      out.set(`${prefix}${name}/`, `dir ${mode}`);
      for (const [k, v] of tree(p, `${prefix}${name}/`)) out.set(k, v);
    } else {
      out.set(prefix + name, `file ${mode} ${readFileSync(p).toString('base64')}`);
    }
  }
  return out;
}
