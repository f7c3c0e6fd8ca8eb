// Shared helpers for end-to-end tests: they drive the real CLI in a child process.
import { spawnSync, type SpawnSyncOptions } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname, relative, resolve } from 'node:path';
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

/** Every file below `dir` (relative path -> sha256 of its bytes); {} if `dir` does not exist. */
export function tree(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out[relative(dir, p)] = createHash('sha256').update(readFileSync(p)).digest('hex');
    }
  };
  if (existsSync(dir)) walk(dir);
  return out;
}
