// Images are input: a checkpoint directory may come from another machine or shared storage.
// One real image is damaged in a few hundred seeded ways (bytes cut, flipped, added; files
// removed, or replaced by a FIFO, a device, a directory; manifest fields retyped or pointed
// outside, with the manifest's hash recomputed so only the checks can object), and each damaged
// copy is restarted by the CLI. Every restart must either run the program to the same output as
// the undamaged image, or refuse with a documented status and one `stasis:` line, no stack
// trace, no hang; and the program's directory must be byte for byte as before either way.
// STASIS_MUTATIONS=N changes how many; STASIS_MUTATION_SEED=S the seed (printed on failure).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  cpSync, lstatSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, truncateSync, writeFileSync,
} from 'node:fs';
import { join, relative } from 'node:path';
import { fixture, stasis, stasisBin, tempDir } from './helpers.js';

const COUNT = Number(process.env.STASIS_MUTATIONS ?? 200);
const SEED = Number(process.env.STASIS_MUTATION_SEED ?? 20261205);
/** Statuses a refused restart may exit with (README): not an image, damaged, missing/changed/inaccessible file. */
const REFUSED = new Set([72, 73, 74, 76, 77]);
const OPS = ['open:0:/data/a.db:rw', 'write:0:XY', 'open:1:/data/ro.cfg:r', 'open:2:/data/app.log:a', 'write:2:one\\n', 'pause', 'dump:0', 'read:1:6', 'write:2:two\\n', 'print:end'];

/** A small, seeded generator (mulberry32): the same mutations on every run. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Every file of a tree, with its bytes (or its link target, or 'dir'). */
function treeOf(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      const rel = relative(dir, p);
      if (e.isDirectory()) {
        out.set(rel, 'dir');
        walk(p);
      } else if (e.isSymbolicLink()) out.set(rel, `link`);
      else out.set(rel, createHash('sha256').update(readFileSync(p)).digest('hex'));
    }
  };
  walk(dir);
  return out;
}

/** Regular files of an image tree (paths relative to it). */
function filesOf(dir: string): string[] {
  return [...treeOf(dir)].filter(([, v]) => v !== 'dir' && v !== 'link').map(([k]) => k).sort();
}

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** Paths to every value in a JSON tree. */
function jsonPaths(v: Json, at: (string | number)[] = [], out: (string | number)[][] = []): (string | number)[][] {
  if (at.length > 0) out.push(at);
  if (Array.isArray(v)) v.forEach((x, i) => jsonPaths(x, [...at, i], out));
  else if (v !== null && typeof v === 'object') for (const k of Object.keys(v)) jsonPaths(v[k]!, [...at, k], out);
  return out;
}

const ODD_VALUES: Json[] = [
  null, -1, 0, 1.5, 2 ** 53, 1e300, '', 'x', '/etc/passwd', '../../../../etc/passwd', 'a/../..', [], {}, true,
  'A'.repeat(1 << 16), [1, 2, 3], { file: '../x' },
];

/** Damages the image tree at `ck` in one way; returns what was done. */
function mutate(ck: string, rnd: () => number): string {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  const files = filesOf(ck);
  const manifests = files.filter((f) => f.endsWith('manifest.json'));
  const kind = pick(['truncate', 'flip', 'append', 'empty', 'delete', 'fifo', 'zero', 'urandom', 'dir', 'json', 'json', 'json', 'json']);
  if (kind === 'json' && manifests.length > 0) {
    const file = pick(manifests);
    const path = join(ck, file);
    const m = JSON.parse(readFileSync(path, 'utf8')) as Json;
    const at = pick(jsonPaths(m));
    const value = pick(ODD_VALUES);
    let parent = m as Record<string | number, Json>;
    for (const k of at.slice(0, -1)) parent = parent[k] as Record<string | number, Json>;
    const key = at[at.length - 1]!;
    if (rnd() < 0.15 && !Array.isArray(parent)) delete parent[key];
    else parent[key] = value;
    const text = JSON.stringify(m, null, 2);
    writeFileSync(path, text);
    writeFileSync(join(ck, file.replace(/manifest\.json$/, 'manifest.sha256')), `${createHash('sha256').update(text).digest('hex')}  manifest.json\n`);
    return `${file}: ${at.join('.')} = ${JSON.stringify(value).slice(0, 40)}`;
  }
  const file = pick(files);
  const path = join(ck, file);
  const size = lstatSync(path).size;
  switch (kind) {
    case 'truncate': {
      const to = Math.floor(rnd() * size);
      truncateSync(path, to);
      return `${file}: cut to ${to} of ${size} bytes`;
    }
    case 'flip': {
      if (size === 0) return `${file}: empty, left`;
      const b = readFileSync(path);
      const i = Math.floor(rnd() * size);
      b[i] ^= 1 << Math.floor(rnd() * 8);
      writeFileSync(path, b);
      return `${file}: bit flipped at ${i}`;
    }
    case 'append':
      writeFileSync(path, Buffer.from('garbage\0\xff'), { flag: 'a' });
      return `${file}: bytes added`;
    case 'empty':
      truncateSync(path, 0);
      return `${file}: emptied`;
    case 'delete':
      rmSync(path);
      return `${file}: removed`;
    case 'fifo':
      rmSync(path);
      execFileSync('mkfifo', [path]);
      return `${file}: replaced by a FIFO`;
    case 'zero':
    case 'urandom':
      rmSync(path);
      symlinkSync(`/dev/${kind}`, path);
      return `${file}: replaced by a link to /dev/${kind}`;
    default:
      rmSync(path);
      mkdirSync(path);
      return `${file}: replaced by a directory`;
  }
}

/** Runs `stasis ARGS` with stdin `input`; kills it if it runs past `limitMs` (a hang). */
function run(args: string[], cwd: string, input: string, limitMs: number): Promise<{ code: number | null; stdout: string; stderr: string; hung: boolean }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [stasisBin, ...args], { cwd, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let hung = false;
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdin.on('error', () => {}); // a refused restart may not read its input
    child.stdin.end(input);
    const timer = setTimeout(() => {
      hung = true;
      child.kill('SIGKILL');
    }, limitMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, hung });
    });
  });
}

test(`a damaged image is refused cleanly or restarts right, and never changes the program's files (${COUNT} seeded mutations)`, { timeout: 30 * 60_000 }, async () => {
  const { dir, cleanup } = tempDir();
  try {
    const data = join(dir, 'data');
    mkdirSync(data);
    writeFileSync(join(data, 'a.db'), 'AAAA');
    writeFileSync(join(data, 'ro.cfg'), 'config');
    const ck = join(dir, 'ckpt');
    // The undamaged image: paused, checkpointed with its open files saved, stopped.
    const launched = spawn(process.execPath, [stasisBin, 'launch', '--quiet', '--name', `mut-${process.pid}`, '--ckpt-dir', ck,
      '--checkpoint-open-files', '--dir', `${data}::/data`, fixture('files_ops'), ...OPS], { cwd: dir, stdio: ['pipe', 'pipe', 'inherit'] });
    const closed = new Promise<number | null>((r) => launched.on('close', r));
    await new Promise<void>((resolve, reject) => {
      let out = '';
      launched.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('paused\n')) resolve();
      });
      void closed.then(() => reject(new Error(`the program ended before pausing: ${out}`)));
    });
    const cp = stasis(['checkpoint', '--exit', `mut-${process.pid}`]);
    assert.equal(cp.code, 0, cp.stderr);
    assert.equal(await closed, 75);
    const pristine = join(dir, 'pristine');
    cpSync(ck, pristine, { recursive: true });
    const before = treeOf(data);
    const good = await run(['restart', '--quiet', ck], dir, 'go\n', 120_000);
    assert.equal(good.code, 0, good.stderr);
    const expected = good.stdout;
    const verified = stasis(['inspect', '--verify', pristine]);
    assert.equal(verified.code, 0, verified.stderr);
    assert.match(verified.stdout, /^image .* verified: module, \d+ memory chunks \(\d+ bytes\), 3 saved file copies\n$/);
    assert.match(expected, /dump 0: XYAA\n/);
    // The good restart cut the log back and went on: the reference state for every mutation is the image's.
    rmSync(data, { recursive: true });
    mkdirSync(data);
    writeFileSync(join(data, 'a.db'), 'XYAA');
    writeFileSync(join(data, 'ro.cfg'), 'config');
    writeFileSync(join(data, 'app.log'), 'one\n');
    const atCheckpoint = treeOf(data);
    assert.deepEqual(atCheckpoint, before); // as the program left them at the checkpoint

    const rnd = random(SEED);
    const outcomes = new Map<string, number>();
    const failures: string[] = [];
    const one = async (i: number): Promise<void> => {
      const copy = join(dir, `m${i}`);
      const work = join(copy, 'data');
      cpSync(pristine, join(copy, 'ckpt'), { recursive: true });
      cpSync(data, work, { recursive: true });
      const what = mutate(join(copy, 'ckpt'), rnd);
      const r = await run(['restart', '--quiet', '--dir', `${work}::/data`, join(copy, 'ckpt')], copy, 'go\n', 120_000);
      const problems: string[] = [];
      if (r.hung) problems.push('hung');
      if (/\n\s+at /.test(r.stderr)) problems.push('stack trace');
      if (r.code === 0) {
        if (r.stdout !== expected) problems.push(`ran from a damaged image with other output: ${JSON.stringify(r.stdout)}`);
      } else {
        if (!REFUSED.has(r.code ?? -1)) problems.push(`exit ${r.code}`);
        if (!/^stasis: [^\n]+\n$/.test(r.stderr)) problems.push(`stderr not one stasis: line: ${JSON.stringify(r.stderr.slice(0, 300))}`);
        if (JSON.stringify([...treeOf(work)]) !== JSON.stringify([...atCheckpoint])) problems.push('the program\'s files changed');
      }
      if (i % 4 === 0) {
        // `inspect --verify` reads the same image and must judge it as cleanly.
        const v = await run(['inspect', '--verify', join(copy, 'ckpt')], copy, '', 120_000);
        if (v.hung) problems.push('verify hung');
        if (v.code !== 0 && !(v.code === 72 || v.code === 73)) problems.push(`verify exit ${v.code}`);
        if (v.code !== 0 && !/^stasis: [^\n]+\n$/.test(v.stderr)) problems.push(`verify stderr not one stasis: line: ${JSON.stringify(v.stderr.slice(0, 300))}`);
        if (v.code === 0 && (r.code === 72 || r.code === 73) && !/unwind buffer|global/.test(r.stderr)) problems.push('verified, but the restart found the image damaged');
      }
      outcomes.set(String(r.code), (outcomes.get(String(r.code)) ?? 0) + 1);
      if (problems.length > 0) failures.push(`#${i} ${what}: ${problems.join('; ')} (exit ${r.code}: ${r.stderr.split('\n')[0]})`);
      rmSync(copy, { recursive: true, force: true });
    };
    // Two at a time: the machine's two cores. Mutations are drawn in order, so the set is the seed's.
    for (let i = 0; i < COUNT; i += 2) {
      const batch = [one(i)];
      if (i + 1 < COUNT) batch.push(one(i + 1));
      await Promise.all(batch);
    }
    assert.deepEqual(failures, [], `seed ${SEED}; outcomes ${JSON.stringify(Object.fromEntries(outcomes))}`);
  } finally {
    cleanup();
  }
});
