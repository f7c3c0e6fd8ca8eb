// DMTCP file semantics, end to end: launch a real program with open files, checkpoint it
// while it waits on stdin, change the world as a user would, restart in a new process, and
// check file contents, modes and the program's output byte for byte.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  appendFileSync, chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { fixture, repoRoot, stasis, stasisBin, tempDir, type RunResult } from './helpers.js';

const CHECKPOINTED = 75;
const PROG = fixture('files_ops');

interface World {
  /** The host directory the program sees as /data. */
  data: string;
  ckpt: string;
  root: string;
}

interface Launched {
  name: string;
  /** Output so far. */
  out(): string;
  /** Waits until the program has paused `n` times in all. */
  paused(n?: number): Promise<void>;
  /** Waits until `stasis status` finds it. */
  running(): Promise<void>;
  /** Checkpoints it (the CLI's JSON reply). */
  checkpoint(exit?: boolean): Promise<{ image: string; bytesWritten: number; files: { saved: number; copied: number } }>;
  /** Lets a paused program go on. */
  resume(): void;
  /** Stops it if it still runs (cleanup after a failure). */
  kill(): void;
  exit: Promise<number | null>;
}

/** Launches files_ops with OPS under `launch EXTRA`. */
function launchOps(w: World, ops: string[], extra: string[] = []): Launched {
  const name = `files-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  return supervised(w, name, ['launch', '--quiet', '--name', name, '--ckpt-dir', w.ckpt,
    '--dir', `${w.data}::/data`, ...extra, PROG, ...ops]);
}

/** Runs `stasis ARGS` (a launch or a restart of the program NAME) in the background. */
function supervised(w: World, name: string, args: string[]): Launched {
  const child = spawn(process.execPath, [stasisBin, ...args], { stdio: ['pipe', 'pipe', 'pipe'], cwd: w.root });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exit = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  return {
    name, exit, out: () => out,
    async paused(n = 1) {
      const deadline = Date.now() + 60_000;
      while (out.split('paused\n').length - 1 < n) {
        if (child.exitCode !== null) assert.fail(`launch ended (${child.exitCode}) before pausing: ${out}${err}`);
        if (Date.now() > deadline) assert.fail(`never paused: ${out}${err}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    async running() {
      const deadline = Date.now() + 30_000;
      while (stasis(['status', name]).code !== 0) {
        assert.ok(Date.now() < deadline && child.exitCode === null, `${args[0]} never came up: ${err}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    async checkpoint(exitAfter = false) {
      const cp = stasis(['checkpoint', '--json', ...(exitAfter ? ['--exit'] : []), name]);
      assert.equal(cp.code, 0, cp.stderr + err);
      if (exitAfter) assert.equal(await exit, CHECKPOINTED, err);
      return JSON.parse(cp.stdout) as { image: string; bytesWritten: number; files: { saved: number; copied: number } };
    },
    resume() {
      child.stdin.write('go\n');
    },
    kill() {
      if (child.exitCode === null) child.kill('SIGKILL');
    },
  };
}

/** Launches, waits for the pause, checkpoints with --exit; returns the output so far. */
async function launchAndCheckpoint(w: World, ops: string[], extra: string[] = []): Promise<string> {
  const l = launchOps(w, ops, extra);
  await l.paused();
  await l.checkpoint(true);
  return l.out();
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
    const r = stasis(['run', '--dir', `${data}::/data`, PROG, ...ops], { input: 'go\n'.repeat(ops.filter((o) => o === 'pause').length) });
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

test('a damaged memory chunk is found before any file is touched: refused (73), nothing changed', async () => {
  const files = { 'app.log': 'start\n' };
  const ops = ['open:0:/data/app.log:a', 'write:0:one\\n', 'pause', 'write:0:two\\n'];
  const w = world(files);
  try {
    await launchAndCheckpoint(w, ops);
    appendFileSync(join(w.data, 'app.log'), 'stray line\n'); // a restart would cut this tail
    for (const name of readdirSync(join(w.ckpt, 'chunks'))) {
      const chunk = join(w.ckpt, 'chunks', name);
      const bytes = readFileSync(chunk);
      bytes[bytes.length >> 1] ^= 0xff;
      writeFileSync(chunk, bytes);
    }
    const listing = snapshotDir(w.root);
    const bad = restart(w);
    assert.equal(bad.code, 73, bad.stderr);
    assert.match(bad.stderr, /^stasis: [^\n]*memory chunk[^\n]*\n$/);
    assert.deepEqual(snapshotDir(w.root), listing);
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

test('--checkpoint-open-files: unchanged files (write-only too) restart cleanly; a differing one is refused (76) unless --allow-file-overwrite', async () => {
  const files = { 'out.txt': 'written before\n', 'in.txt': 'input' };
  const ops = ['open:0:/data/out.txt:w', 'seek:0:15', 'write:0:by prog\\n', 'open:1:/data/in.txt:r', 'read:1:2', 'pause',
    'write:0:after\\n', 'read:1:3'];
  const ref = reference(files, ops);
  const w = world(files);
  try {
    const before = await launchAndCheckpoint(w, ops, ['--checkpoint-open-files']);
    // Unchanged: a clean restart (DMTCP refuses an unchanged write-only file here).
    const atCheckpoint = snapshotDir(w.data);
    const ok = restart(w);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(before + ok.stdout, ref.out);
    assert.deepEqual(snapshotDir(w.data), ref.files);

    // Changed since: refused, naming both files, nothing written.
    put(w.data, Object.fromEntries([...atCheckpoint].map(([k, v]) => [k, String(v)])));
    writeFileSync(join(w.data, 'out.txt'), 'edited by a user\n');
    writeFileSync(join(w.data, 'in.txt'), 'INPUT');
    const listing = snapshotDir(w.root);
    const bad = restart(w);
    assert.equal(bad.code, 76, bad.stderr);
    assert.match(bad.stderr, /out\.txt/);
    assert.match(bad.stderr, /in\.txt/);
    assert.match(bad.stderr, /--allow-file-overwrite/);
    assert.equal(bad.stderr.trim().split('\n').length, 1);
    assert.deepEqual(snapshotDir(w.root), listing);

    // --allow-file-overwrite at restart: replaced, the edited versions kept and reported.
    const forced = restart(w, ['--allow-file-overwrite']);
    assert.equal(forced.code, 0, forced.stderr);
    assert.equal(before + forced.stdout, ref.out);
    assert.deepEqual(snapshotDir(w.data), ref.files);
    assert.deepEqual([...keptFiles(w.ckpt).values()].map(String).sort(), ['INPUT', 'edited by a user\n']);
  } finally {
    w.cleanup();
  }
});

test('--checkpoint-open-files: a missing file is recreated from its copy with its mode; --allow-file-overwrite at launch replaces', async () => {
  const files = { 'keep.txt': 'abc' };
  const ops = ['open:0:/data/keep.txt:w', 'seek:0:3', 'write:0:def', 'pause', 'write:0:ghi'];
  const ref = reference(files, ops);
  const w = world(files);
  try {
    chmodSync(join(w.data, 'keep.txt'), 0o640);
    await launchAndCheckpoint(w, ops, ['--checkpoint-open-files', '--allow-file-overwrite']);
    rmSync(join(w.data, 'keep.txt'));
    const r = restart(w);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(snapshotDir(w.data), ref.files);
    assert.equal(statSync(join(w.data, 'keep.txt')).mode & 0o777, 0o640);

    await launchAndCheckpoint(w, ['open:0:/data/keep.txt:rw', 'pause', 'dump:0']);
    writeFileSync(join(w.data, 'keep.txt'), 'changed');
    // --allow-file-overwrite was given at launch: the restart replaces without being told again.
    const r2 = restart(w);
    assert.equal(r2.code, 0, r2.stderr);
    assert.match(r2.stdout, /dump 0: abcdefghi/);
    assert.equal(statSync(join(w.data, 'keep.txt')).mode & 0o777, 0o640);
  } finally {
    w.cleanup();
  }
});

test('deleted-but-open files of every mode are saved and come back deleted, usable through their fds', async () => {
  const files = { 'r.txt': 'read me', 'w.txt': 'write me', 'rw.txt': 'both' };
  const ops = ['open:0:/data/r.txt:r', 'open:1:/data/w.txt:w', 'open:2:/data/rw.txt:rw',
    'unlink:/data/r.txt', 'unlink:/data/w.txt', 'unlink:/data/rw.txt', 'write:1:W', 'seek:2:4', 'write:2:!',
    'pause', 'read:0:4', 'write:1:X', 'size:1', 'write:2:?', 'dump:2'];
  const ref = reference(files, ops);
  const w = world(files);
  try {
    const before = await launchAndCheckpoint(w, ops);
    const r = restart(w);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(before + r.stdout, ref.out);
    assert.deepEqual(snapshotDir(w.data), new Map(), 'deleted files reappeared');
    assert.deepEqual(readdirSync(w.ckpt).filter((n) => n.startsWith('.stasis')), []);
  } finally {
    w.cleanup();
  }
});

test('a file renamed while open is found by identity; two fds on one file share one saved copy', async () => {
  const files = { 'db.bin': '0123456789', 'sub/x.txt': 'x' };
  const ops = ['open:0:/data/db.bin:rw', 'open:1:/data/db.bin:r', 'seek:0:1', 'write:0:A', 'pause', 'write:0:B', 'dump:1'];
  const w = world(files);
  try {
    const l = launchOps(w, ops);
    await l.paused();
    // Someone moves the database while the program has it open.
    renameSync(join(w.data, 'db.bin'), join(w.data, 'sub', 'moved.bin'));
    await l.checkpoint(true);
    const info = JSON.parse(stasis(['inspect', '--json', w.ckpt]).stdout) as { files: { fds: number[]; path: string; treatment: string }[] };
    assert.equal(info.files.length, 1, JSON.stringify(info.files));
    assert.equal(info.files[0]!.fds.length, 2);
    assert.match(info.files[0]!.path, /sub\/moved\.bin$/);
    assert.equal(readdirSync(join(w.ckpt, 'files')).length, 1);
    writeFileSync(join(w.data, 'sub', 'moved.bin'), 'garbage');
    const r = restart(w);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /dump 1: 0AB3456789/);
    assert.equal(readFileSync(join(w.data, 'sub', 'moved.bin'), 'utf8'), '0AB3456789');
    assert.equal(existsSync(join(w.data, 'db.bin')), false);
  } finally {
    w.cleanup();
  }
});

test('an unchanged saved file is not copied again; image and copies move together', async () => {
  const big = 'x'.repeat(3 << 20);
  const files = { 'db.bin': big };
  const ops = ['open:0:/data/db.bin:rw', 'write:0:head', 'pause', 'pause', 'write:0:more', 'size:0'];
  const ref = reference(files, ops);
  const w = world(files);
  try {
    const l = launchOps(w, ops);
    await l.paused(1);
    const first = await l.checkpoint();
    assert.ok(first.bytesWritten > big.length, `first: ${first.bytesWritten}`);
    l.resume();
    await l.paused(2);
    const second = await l.checkpoint(true);
    assert.ok(second.bytesWritten < big.length / 20, `second wrote ${second.bytesWritten} bytes`);
    const moved = join(w.root, 'moved-ckpt');
    renameSync(w.ckpt, moved);
    writeFileSync(join(w.data, 'db.bin'), 'scribbled over');
    const r = stasis(['restart', '--quiet', moved], { input: 'go\n' });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(l.out() + r.stdout, ref.out);
    assert.deepEqual(snapshotDir(w.data), ref.files);
  } finally {
    w.cleanup();
  }
});

test('a damaged saved copy: restart refused (73), nothing changed', async () => {
  const files = { 'db.bin': '0123456789' };
  const w = world(files);
  try {
    await launchAndCheckpoint(w, ['open:0:/data/db.bin:rw', 'write:0:A', 'pause', 'dump:0']);
    writeFileSync(join(w.data, 'db.bin'), 'changed');
    const [copy] = readdirSync(join(w.ckpt, 'files'));
    writeFileSync(join(w.ckpt, 'files', copy!), 'Z123456789');
    const listing = snapshotDir(w.root);
    const bad = restart(w);
    assert.equal(bad.code, 73, bad.stderr);
    assert.match(bad.stderr, /saved copy of .*db\.bin.*damaged/);
    assert.deepEqual(snapshotDir(w.root), listing);
  } finally {
    w.cleanup();
  }
});

test('directory fds with a readdir position do not break a checkpoint, with --checkpoint-open-files too', async () => {
  const w = world({ 'd/a': '1', 'd/b': '2' });
  try {
    const out = await launchAndCheckpoint(w, ['open:0:/data/d/a:r', 'pause', 'read:0:1'], ['--checkpoint-open-files']);
    const r = restart(w);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(out + r.stdout, 'paused\nread 0: 1\ndone\n');
  } finally {
    w.cleanup();
  }
});

test('--dry-run prints one line per file and changes nothing; a refusal gives its status', async () => {
  const files = { 'ro.txt': 'r', 'app.log': 'log\n', 'db.bin': '0123' };
  const ops = ['open:0:/data/ro.txt:r', 'open:1:/data/app.log:a', 'write:1:x\\n', 'open:2:/data/db.bin:rw', 'write:2:A', 'pause'];
  const w = world(files);
  try {
    await launchAndCheckpoint(w, ops);
    appendFileSync(join(w.data, 'app.log'), 'later\n');
    writeFileSync(join(w.data, 'db.bin'), 'other');
    const listing = snapshotDir(w.root);
    const plan = stasis(['restart', '--dry-run', w.ckpt], { cwd: w.root });
    assert.equal(plan.code, 0, plan.stderr);
    const lines = plan.stdout.trim().split('\n');
    assert.equal(lines.length, 3, plan.stdout);
    assert.match(plan.stdout, /^reopen +.*ro\.txt: read-only/m);
    assert.match(plan.stdout, /^cut log +.*app\.log: from 12 to 6 bytes/m);
    assert.match(plan.stdout, /^replace +.*db\.bin: differs from its saved copy/m);
    assert.deepEqual(snapshotDir(w.root), listing);
    rmSync(join(w.data, 'ro.txt'));
    const refused = stasis(['restart', '--dry-run', w.ckpt], { cwd: w.root });
    assert.equal(refused.code, 74);
    assert.match(refused.stdout, /^refuse +.*ro\.txt/m);
  } finally {
    w.cleanup();
  }
});

test('ckptfiles: --ckpt-files / --no-ckpt-files / --file-rules choose what is saved, first match wins; a rule may move a file at restart', async () => {
  const files = { 'a.db': 'AAAA', 'b.db': 'BBBB', 'ro.cfg': 'config', 'x.bin': 'xx' };
  const ops = ['open:0:/data/a.db:rw', 'write:0:1', 'open:1:/data/b.db:rw', 'write:1:2', 'open:2:/data/ro.cfg:r',
    'open:3:/data/x.bin:rw', 'pause', 'dump:0', 'dump:1', 'read:2:6', 'dump:3'];
  const w = world(files);
  try {
    const moved = join(w.data, 'new-place');
    mkdirSync(moved);
    writeFileSync(join(w.root, 'rules.txt'), `# rules for the test\nskip  data/b.db\nsave  *.cfg -> data/new-place/\nlog   x.bin\n`);
    await launchAndCheckpoint(w, ops, ['--no-ckpt-files', 'a.db', '--ckpt-files', '*.db', '--file-rules', 'rules.txt']);
    const info = JSON.parse(stasis(['inspect', '--json', w.ckpt]).stdout) as { files: { path: string; treatment: string; reason: string }[] };
    const by = Object.fromEntries(info.files.map((f) => [f.path.replace(/.*\//, ''), f]));
    assert.equal(by['a.db']!.treatment, 'reopen'); // --no-ckpt-files a.db came first
    assert.match(by['a.db']!.reason, /--no-ckpt-files/);
    assert.equal(by['b.db']!.treatment, 'save'); // --ckpt-files *.db before the file's skip rule
    assert.equal(by['ro.cfg']!.treatment, 'save');
    assert.match(by['ro.cfg']!.reason, /rules\.txt:3/);
    assert.equal(by['x.bin']!.treatment, 'log');
    // After the checkpoint: every file changes; the config goes away from its old place.
    writeFileSync(join(w.data, 'a.db'), 'a-later');
    writeFileSync(join(w.data, 'b.db'), 'b-later');
    rmSync(join(w.data, 'ro.cfg'));
    appendFileSync(join(w.data, 'x.bin'), 'tail');
    const r = restart(w);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /dump 0: a-later\n/); // not saved: as the world has it
    assert.match(r.stdout, /dump 1: 2BBB\n/); // saved: back as at the checkpoint
    assert.match(r.stdout, /read 2: config\n/); // restored at its restart path
    assert.equal(readFileSync(join(moved, 'ro.cfg'), 'utf8'), 'config');
    assert.match(r.stdout, /dump 3: xx\n/); // a log: cut back
  } finally {
    w.cleanup();
  }
});

test('a restart path outside the program\'s directories: refused at launch (78), and in an image (73) with nothing written', async () => {
  const files = { 'ro.cfg': 'config' };
  const ops = ['open:0:/data/ro.cfg:r', 'pause', 'read:0:6'];
  const w = world(files);
  try {
    const outside = join(w.root, 'outside');
    mkdirSync(outside);
    writeFileSync(join(w.root, 'out.rules'), 'save *.cfg -> outside/\n');
    const refused = stasis(['launch', '--quiet', '--ckpt-dir', w.ckpt, '--dir', `${w.data}::/data`, '--file-rules', 'out.rules', PROG, ...ops], { cwd: w.root, input: 'go\n' });
    assert.equal(refused.code, 78, refused.stderr);
    assert.match(refused.stderr, /^stasis: save \*\.cfg \(out\.rules:1\) puts files at .*outside every --dir[^\n]*\n$/);
    assert.equal(existsSync(w.ckpt), false);

    // An image whose rule says "inside", edited (hash recomputed) to put the file outside.
    mkdirSync(join(w.data, 'kept'));
    writeFileSync(join(w.root, 'in.rules'), 'save *.cfg -> data/kept/\n');
    await launchAndCheckpoint(w, ops, ['--file-rules', 'in.rules']);
    const image = join(w.ckpt, 'images', readdirSync(join(w.ckpt, 'images')).sort().pop()!);
    const text = readFileSync(join(image, 'manifest.json'), 'utf8').replaceAll(join(w.data, 'kept'), outside);
    writeFileSync(join(image, 'manifest.json'), text);
    writeFileSync(join(image, 'manifest.sha256'), `${createHash('sha256').update(text).digest('hex')}  manifest.json\n`);
    rmSync(join(w.data, 'ro.cfg'));
    const before = snapshotDir(w.root);
    const r = restart(w);
    assert.equal(r.code, 73, r.stderr);
    assert.match(r.stderr, /^stasis: restart refused, nothing changed: the image puts \/data\/ro\.cfg at .*outside the program's directories[^\n]*\n$/);
    assert.deepEqual(snapshotDir(w.root), before);
    assert.deepEqual(readdirSync(outside), []);
  } finally {
    w.cleanup();
  }
});

test('bad file options: rules file errors name the line (78), conflicts (64), a path map to nowhere (68); nothing written', () => {
  const w = world({ 'a.db': 'A' });
  try {
    const run = (extra: string[]): RunResult => stasis(['launch', '--quiet', '--ckpt-dir', w.ckpt, '--dir', `${w.data}::/data`, ...extra, PROG, 'pause'], { cwd: w.root, input: 'go\n' });
    writeFileSync(join(w.root, 'bad.rules'), 'save *.db\nsav *.log\n');
    const bad = run(['--file-rules', 'bad.rules']);
    assert.equal(bad.code, 78, bad.stderr);
    assert.match(bad.stderr, /^stasis: [^\n]*bad\.rules:2: [^\n]*sav[^\n]*\n$/);
    const noFile = run(['--file-rules', 'nope.rules']);
    assert.equal(noFile.code, 78, noFile.stderr);
    const conflict = run(['--ckpt-files', 'data/*.db', '--no-ckpt-files', 'data/*.db']);
    assert.equal(conflict.code, 64, conflict.stderr);
    assert.match(conflict.stderr, /conflicts/);
    const nowhere = run(['--path-map', `${w.data}=${join(w.root, 'nowhere')}`]);
    assert.equal(nowhere.code, 68, nowhere.stderr);
    assert.match(nowhere.stderr, /nowhere does not exist/);
    const twice = run(['--path-map', `${w.data}=/tmp`, '--path-map', `${w.data}=/`]);
    assert.equal(twice.code, 64, twice.stderr);
    const plugin = run(['--plugin', 'missing-plugin.js']);
    assert.equal(plugin.code, 78, plugin.stderr);
    for (const r of [bad, noFile, conflict, nowhere, twice, plugin]) assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.equal(existsSync(w.ckpt), false);
  } finally {
    w.cleanup();
  }
});

test('--path-map at restart moves open files and later opens; at launch the program keeps its paths', async () => {
  const files = { 'log.txt': 'L\n', 'db.bin': '0123', 'later.txt': 'old place' };
  const ops = ['open:0:/data/log.txt:a', 'write:0:x\\n', 'open:1:/data/db.bin:rw', 'write:1:A', 'pause',
    'write:0:y\\n', 'dump:1', 'open:2:/data/later.txt:r', 'read:2:20'];
  const w = world(files);
  try {
    const before = await launchAndCheckpoint(w, ops);
    // The data directory moves to another place (another host, another disk).
    const elsewhere = join(w.root, 'elsewhere');
    renameSync(w.data, elsewhere);
    writeFileSync(join(elsewhere, 'later.txt'), 'new place');
    const r = restart(w, ['--path-map', `${w.data}=${elsewhere}`]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(before + r.stdout, 'paused\ndump 1: A123\nread 2: new place\ndone\n');
    assert.equal(readFileSync(join(elsewhere, 'log.txt'), 'utf8'), 'L\nx\ny\n');
    assert.equal(existsSync(w.data), false);

    // A map inside a preopen: files open at the checkpoint and later opens below it move;
    // the rest of the directory stays.
    const w3 = world({ 'logs/a.log': 'a\n', 'top.txt': 'top' });
    try {
      const ops3 = ['open:0:/data/logs/a.log:a', 'write:0:b\n', 'pause', 'write:0:c\n', 'open:1:/data/logs/new.txt:w', 'write:1:N',
        'open:2:/data/top.txt:r', 'read:2:3'];
      const out3 = await launchAndCheckpoint(w3, ops3);
      const logs = join(w3.root, 'logs-elsewhere');
      renameSync(join(w3.data, 'logs'), logs);
      const r3 = restart(w3, ['--path-map', `${join(w3.data, 'logs')}=${logs}`]);
      assert.equal(r3.code, 0, r3.stderr);
      assert.equal(out3 + r3.stdout, 'paused\nread 2: top\ndone\n');
      assert.equal(readFileSync(join(logs, 'a.log'), 'utf8'), 'a\nb\nc\n');
      assert.equal(readFileSync(join(logs, 'new.txt'), 'utf8'), 'N');
      assert.deepEqual(readdirSync(w3.data), ['top.txt']);
    } finally {
      w3.cleanup();
    }

    // Mapped at launch: the image keeps the program's own paths, and the map with it.
    const w2 = world({});
    try {
      const real = join(w2.root, 'real');
      put(real, files);
      const out = await launchAndCheckpoint(w2, ops, ['--path-map', `${w2.data}=${real}`]);
      const info = JSON.parse(stasis(['inspect', '--json', w2.ckpt]).stdout) as { wasi: { preopens: { host: string }[] } };
      assert.equal(info.wasi.preopens[0]!.host, w2.data);
      const r2 = stasis(['restart', '--quiet', w2.ckpt], { input: 'go\n' });
      assert.equal(r2.code, 0, r2.stderr);
      assert.equal(out + r2.stdout, 'paused\ndump 1: A123\nread 2: old place\ndone\n');
      assert.equal(readFileSync(join(real, 'log.txt'), 'utf8'), 'L\nx\ny\n');
      assert.deepEqual(readdirSync(w2.data), []);
    } finally {
      w2.cleanup();
    }
  } finally {
    w.cleanup();
  }
});

test('plugins: the example plugin decides files and sees every event, at launch and at restart', async () => {
  const plugin = join(repoRoot, 'examples', 'plugins', 'audit.mjs');
  const files = { 'cache/c.bin': '0123', 'app.sqlite': 'SQL' };
  const ops = ['open:0:/data/cache/c.bin:rw', 'write:0:A', 'open:1:/data/app.sqlite:r', 'pause', 'dump:0', 'dump:1'];
  const w = world(files);
  try {
    const log = join(w.root, 'audit.log');
    process.env.STASIS_AUDIT_LOG = log; // inherited by the launcher and the restart
    try {
      await launchAndCheckpoint(w, ops, ['--plugin', plugin]);
      const info = JSON.parse(stasis(['inspect', '--json', w.ckpt]).stdout) as { files: { path: string; treatment: string; reason: string }[] };
      const by = Object.fromEntries(info.files.map((f) => [f.path.replace(/.*\//, ''), f]));
      assert.equal(by['c.bin']!.treatment, 'reopen'); // a database by default; the plugin says no
      assert.match(by['c.bin']!.reason, /^audit: caches/);
      assert.equal(by['app.sqlite']!.treatment, 'save'); // read-only, saved by the plugin
      writeFileSync(join(w.data, 'cache', 'c.bin'), 'rebuilt');
      rmSync(join(w.data, 'app.sqlite'));
      const r = restart(w, ['--plugin', plugin]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, 'dump 0: rebuilt\ndump 1: SQL\ndone\n');
      const events = readFileSync(log, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { event: string; resumed?: boolean; plan?: number });
      assert.deepEqual(events.map((e) => e.event), ['beforeCheckpoint', 'decideFile', 'decideFile', 'afterCheckpoint', 'onRestart']);
      assert.equal(events[3]!.resumed, false);
      assert.equal(events[4]!.plan, 2);
    } finally {
      delete process.env.STASIS_AUDIT_LOG;
    }
  } finally {
    w.cleanup();
  }
});

test('a launcher killed (SIGKILL) while writing an image with saved files leaves a restartable image', async () => {
  const size = 32 << 20;
  const ops = ['open:0:/data/db.bin:rw', 'write:0:A', 'pause', 'seek:0:0', 'write:0:B', 'pause', 'dump:0'];
  for (const delay of [0, 15, 40, 90]) {
    const w = world({});
    try {
      writeFileSync(join(w.data, 'db.bin'), Buffer.alloc(size, 'z'));
      const l = launchOps(w, ops);
      await l.paused(1);
      await l.checkpoint();
      l.resume();
      await l.paused(2);
      const child = spawn(process.execPath, [stasisBin, 'checkpoint', l.name], { stdio: 'ignore' });
      const asked = new Promise((r) => child.on('exit', r));
      await new Promise((r) => setTimeout(r, delay));
      const pid = Number(JSON.parse(stasis(['status', '--json', l.name]).stdout || '{"pid":0}').pid);
      if (pid > 0) process.kill(pid, 'SIGKILL');
      await l.exit;
      await asked;
      const info = JSON.parse(stasis(['inspect', '--json', w.ckpt]).stdout) as { generation: number; complete: boolean };
      assert.equal(info.complete, true, `delay ${delay}`);
      // Whichever image is the latest, it restarts and the program ends the same way.
      const r = stasis(['restart', '--quiet', w.ckpt], { input: 'go\ngo\n' });
      assert.equal(r.code, 0, `delay ${delay}: ${r.stderr}`);
      assert.match(r.stdout, /dump 0: Bzzz/);
      const db = readFileSync(join(w.data, 'db.bin'));
      assert.equal(db.length, size);
      assert.equal(db.subarray(0, 4).toString(), 'Bzzz');
    } finally {
      w.cleanup();
    }
  }
});

test('--keep 1: a file closed and reopened unchanged is copied again once its old copy is collected', async () => {
  const files = { 'db.bin': '0123456789' };
  const ops = ['open:0:/data/db.bin:rw', 'write:0:A', 'pause', 'close:0', 'pause', 'open:1:/data/db.bin:rw', 'seek:1:1', 'pause', 'dump:1'];
  const w = world(files);
  try {
    const l = launchOps(w, ops, ['--keep', '1']);
    await l.paused(1);
    await new Promise((r) => setTimeout(r, 300)); // let the write age: the copy is then trusted later
    await l.checkpoint();
    l.resume();
    await l.paused(2);
    await l.checkpoint(); // no file open: the copy is collected with the old image
    assert.deepEqual(readdirSync(join(w.ckpt, 'files')), []);
    l.resume();
    await l.paused(3);
    await l.checkpoint(true);
    writeFileSync(join(w.data, 'db.bin'), 'changed!!!');
    const r = restart(w);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'dump 1: A123456789\ndone\n');
  } finally {
    w.cleanup();
  }
});

test('restart refuses (77) when a saved file is now a directory or unreadable, changing nothing', async () => {
  const w = world({ 'db.bin': '0123456789' });
  try {
    await launchAndCheckpoint(w, ['open:0:/data/db.bin:rw', 'write:0:A', 'pause', 'dump:0']);
    rmSync(join(w.data, 'db.bin'));
    mkdirSync(join(w.data, 'db.bin'));
    const listing = snapshotDir(w.root);
    const bad = restart(w);
    assert.equal(bad.code, 77, bad.stderr);
    assert.match(bad.stderr, /db\.bin.*not a regular file/);
    assert.deepEqual(snapshotDir(w.root), listing);
    const plan = stasis(['restart', '--dry-run', w.ckpt]);
    assert.equal(plan.code, 77);
    assert.match(plan.stdout, /^refuse +.*db\.bin/m);
  } finally {
    w.cleanup();
  }
});

test('a big saved file is copied while the program goes on: its writes and truncation after the checkpoint do not reach the copy', async () => {
  const size = 96 << 20;
  const content = Buffer.alloc(size);
  for (let i = 0; i < size; i += 4096) content.write(`block ${i / 4096} `, i);
  const ops = ['open:0:/data/big.bin:rw', 'seek:0:5', 'write:0:HELLO', 'pause',
    'seek:0:95000000', 'write:0:LATE', 'seek:0:0', 'write:0:EARLY', 'trunc:0:6000000', 'pause', 'size:0', 'dump:0'];
  const w = world({});
  try {
    writeFileSync(join(w.data, 'big.bin'), content);
    const atCheckpoint = Buffer.from(content);
    atCheckpoint.write('HELLO', 5);
    const l = launchOps(w, ops);
    await l.paused(1);
    // Its input comes once it is captured but long before the copy is done: it goes on with
    // its writes while the launcher copies.
    const { checkpoint } = await import('../src/api.js');
    const asked = checkpoint(l.name);
    await new Promise((r) => setTimeout(r, 30));
    l.resume();
    const cp = await asked;
    await l.paused(2);
    const info = JSON.parse(stasis(['inspect', '--json', w.ckpt]).stdout) as { wasi: { fds: { fd: number; offset?: number }[] } };
    const offset = info.wasi.fds.find((f) => f.offset !== undefined)?.offset;
    if (offset !== 10) { // the input came before the request was served (a slow machine): nothing to see
      stasis(['kill', l.name]);
      await l.exit;
      return;
    }
    // The program changed the file right after the checkpoint; the copy is as it was then.
    const copies = readdirSync(join(w.ckpt, 'files'));
    assert.equal(copies.length, 1);
    const copy = readFileSync(join(w.ckpt, 'files', copies[0]!));
    let at = 0;
    while (at < size && copy[at] === atCheckpoint[at]) at++;
    assert.ok(copy.equals(atCheckpoint), `the saved copy (${copy.length} bytes) differs from the file at the checkpoint from byte ${at}: ${copy.subarray(at, at + 16).toString()}`);
    assert.ok(cp.bytesWritten >= size);
    stasis(['kill', l.name]);
    await l.exit;
    const r = stasis(['restart', '--quiet', w.ckpt], { input: 'go\ngo\n' });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^paused\nsize 0: 6000000\n/);
    const after = readFileSync(join(w.data, 'big.bin'));
    const want = atCheckpoint.subarray(0, 6000000);
    want.write('EARLY', 0);
    assert.ok(after.equals(want));
  } finally {
    w.cleanup();
  }
});

test('after a restart, a saved file still identical to its copy is not copied again by the next checkpoint', async () => {
  const big = 'x'.repeat(3 << 20);
  const files = { 'db.bin': big };
  const ops = ['open:0:/data/db.bin:rw', 'write:0:head', 'pause', 'pause', 'write:0:more', 'size:0'];
  const ref = reference(files, ops);
  const w = world(files);
  let restarted: Launched | null = null;
  try {
    const before = await launchAndCheckpoint(w, ops);
    const copies = (): string[] => readdirSync(join(w.ckpt, 'files')).sort();
    const saved = copies();
    assert.equal(saved.length, 1);
    await new Promise((r) => setTimeout(r, 200)); // the file's last change is then well in the past
    // Restart (the file is as it was: reopened), checkpoint the restarted program, let it finish.
    const name = `reseed-${process.pid}`;
    const r = supervised(w, name, ['restart', '--quiet', '--name', name, w.ckpt]);
    restarted = r;
    await r.running();
    const second = await r.checkpoint();
    assert.deepEqual(second.files, { saved: 1, copied: 0 }, 'the file was not copied again');
    assert.ok(second.bytesWritten < big.length / 20, `the checkpoint after the restart wrote ${second.bytesWritten} bytes`);
    assert.deepEqual(copies(), saved, 'no new copy of the file');
    r.resume();
    r.resume();
    assert.equal(await r.exit, 0);
    assert.equal(before + r.out(), ref.out);
    assert.deepEqual(snapshotDir(w.data), ref.files);
    // The second image restarts too, from the shared copy.
    writeFileSync(join(w.data, 'db.bin'), 'scribbled over');
    const again = stasis(['restart', '--quiet', '--allow-file-overwrite', second.image], { input: 'go\ngo\n', cwd: w.root });
    assert.equal(again.code, 0, again.stderr);
    assert.equal(before + again.stdout, ref.out);
    assert.deepEqual(snapshotDir(w.data), ref.files);
  } finally {
    restarted?.kill();
    w.cleanup();
  }
});
