// DMTCP file semantics, end to end: launch a real program with open files, checkpoint it
// while it waits on stdin, change the world as a user would, restart in a new process, and
// check file contents, modes and the program's output byte for byte.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import {
  appendFileSync, existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { fixture, stasis, stasisBin, tempDir, type RunResult } from './helpers.js';

const CHECKPOINTED = 75;
const PROG = fixture('files_ops');

interface World {
  /** The host directory the program sees as /data. */
  data: string;
  ckpt: string;
  root: string;
}

/**
 * Launches files_ops with OPS under `launch EXTRA`, waits until it pauses, checkpoints it
 * with --exit; returns its output so far.
 */
async function launchAndCheckpoint(w: World, ops: string[], extra: string[] = []): Promise<string> {
  const name = `files-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  const child = spawn(process.execPath, [stasisBin, 'launch', '--quiet', '--name', name, '--ckpt-dir', w.ckpt,
    '--dir', `${w.data}::/data`, ...extra, PROG, ...ops], { stdio: ['pipe', 'pipe', 'pipe'], cwd: w.root });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const deadline = Date.now() + 60_000;
  while (!out.includes('paused\n')) {
    if (child.exitCode !== null) assert.fail(`launch ended (${child.exitCode}) before pausing: ${out}${err}`);
    if (Date.now() > deadline) assert.fail(`never paused: ${out}${err}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  const cp = stasis(['checkpoint', '--exit', name]);
  assert.equal(cp.code, 0, cp.stderr);
  assert.equal(await exit, CHECKPOINTED, err);
  return out;
}

function restart(w: World, extra: string[] = []): RunResult {
  return stasis(['restart', '--quiet', ...extra, w.ckpt], { input: 'go\n', cwd: w.root });
}

/** The same ops run to the end in one process (for the expected output and files). */
function reference(files: Record<string, string>, ops: string[]): { out: string; files: Map<string, Buffer> } {
  const { dir, cleanup } = tempDir();
  try {
    const data = join(dir, 'data');
    put(data, files);
    const r = stasis(['run', '--dir', `${data}::/data`, PROG, ...ops], { input: 'go\n' });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    return { out: r.stdout, files: snapshotDir(data) };
  } finally {
    cleanup();
  }
}

function world(files: Record<string, string>): World & { cleanup: () => void } {
  const { dir, cleanup } = tempDir();
  const w = { root: dir, data: join(dir, 'data'), ckpt: join(dir, 'ckpt') };
  put(w.data, files);
  return { ...w, cleanup };
}

function put(dir: string, files: Record<string, string>): void {
  mkdirSync(dir, { recursive: true });
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(join(dir, name, '..'), { recursive: true });
    writeFileSync(join(dir, name), text);
  }
}

function snapshotDir(dir: string, prefix = ''): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    if (e.isDirectory()) for (const [k, v] of snapshotDir(join(dir, e.name), `${prefix}${e.name}/`)) out.set(k, v);
    else out.set(prefix + e.name, readFileSync(join(dir, e.name)));
  }
  return out;
}

/** Every file under kept/ (what a restart kept of replaced or cut bytes). */
function keptFiles(ckpt: string): Map<string, Buffer> {
  const kept = join(ckpt, 'kept');
  if (!existsSync(kept)) return new Map();
  const out = new Map<string, Buffer>();
  for (const [k, v] of snapshotDir(kept)) if (!k.endsWith('kept.json')) out.set(k.replace(/^[^/]+\//, ''), v);
  return out;
}

test('read-only file: not saved, reopened at its offset; missing at restart -> refused, nothing changed', async () => {
  const files = { 'ro.txt': 'abcdefgh' };
  const ops = ['open:0:/data/ro.txt:r', 'read:0:3', 'pause', 'read:0:3'];
  const ref = reference(files, ops);
  const w = world(files);
  try {
    const before = await launchAndCheckpoint(w, ops);
    assert.equal(readdirSync(join(w.ckpt, 'files')).length, 0, 'read-only file copied');
    const r = restart(w);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(before + r.stdout, ref.out);

    // Missing: refused (74) with the file and the options that help, and nothing written.
    await launchAndCheckpoint(w, ops);
    rmSync(join(w.data, 'ro.txt'));
    const listing = snapshotDir(w.root);
    const bad = restart(w);
    assert.equal(bad.code, 74, bad.stderr);
    assert.match(bad.stderr, /ro\.txt/);
    assert.match(bad.stderr, /--checkpoint-open-files/);
    assert.equal(bad.stderr.trim().split('\n').length, 1, bad.stderr);
    assert.deepEqual(snapshotDir(w.root), listing);
  } finally {
    w.cleanup();
  }
});

test('log (append mode and at-end): cut back to the checkpoint offset, the tail kept and reported', async () => {
  const files = { 'app.log': 'start\n', 'plain.log': '' };
  const ops = ['open:0:/data/app.log:a', 'write:0:one\\n', 'open:1:/data/plain.log:w', 'write:1:first\\n',
    'pause', 'write:0:two\\n', 'write:1:second\\n'];
  const ref = reference(files, ops);
  const w = world(files);
  try {
    const before = await launchAndCheckpoint(w, ops);
    assert.equal(readdirSync(join(w.ckpt, 'files')).length, 0, 'a log was copied');
    // Meanwhile the logs grew (another run, or the program itself before it was stopped).
    appendFileSync(join(w.data, 'app.log'), 'stray line\n');
    appendFileSync(join(w.data, 'plain.log'), 'stray\n');
    const r = restart(w, []);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(before + r.stdout, ref.out);
    assert.deepEqual(snapshotDir(w.data), ref.files);
    // The cut tails are kept and reported.
    const kept = keptFiles(w.ckpt);
    assert.deepEqual([...kept.values()].map(String).sort(), ['stray\n', 'stray line\n']);
    const r2 = stasis(['restart', w.ckpt], { input: 'go\n', cwd: w.root });
    assert.equal(r2.code, 0);
  } finally {
    w.cleanup();
  }
});

test('log shorter than at the checkpoint: refused (76), nothing changed', async () => {
  const files = { 'app.log': 'start\n' };
  const ops = ['open:0:/data/app.log:a', 'write:0:one\\n', 'pause', 'write:0:two\\n'];
  const w = world(files);
  try {
    await launchAndCheckpoint(w, ops);
    writeFileSync(join(w.data, 'app.log'), 'st');
    const listing = snapshotDir(w.root);
    const bad = restart(w);
    assert.equal(bad.code, 76, bad.stderr);
    assert.match(bad.stderr, /app\.log.*shorter/);
    assert.deepEqual(snapshotDir(w.root), listing);
  } finally {
    w.cleanup();
  }
});

test('database (writable, offset before end): saved and restored; the differing file kept as a backup', async () => {
  const files = { 'db.bin': '0123456789' };
  const ops = ['open:0:/data/db.bin:rw', 'seek:0:2', 'write:0:AB', 'pause', 'write:0:cd', 'dump:0'];
  const ref = reference(files, ops);
  const w = world(files);
  try {
    const before = await launchAndCheckpoint(w, ops);
    assert.equal(readdirSync(join(w.ckpt, 'files')).filter((n) => !n.startsWith('.')).length, 1);
    // After the checkpoint the database moved on (the program went on, or someone edited it).
    writeFileSync(join(w.data, 'db.bin'), '01ABzzzz89-later');
    const r = restart(w);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(before + r.stdout, ref.out);
    assert.deepEqual(snapshotDir(w.data), ref.files);
    assert.deepEqual([...keptFiles(w.ckpt).values()].map(String), ['01ABzzzz89-later']);
  } finally {
    w.cleanup();
  }
});
