// Rollback, hard cases: directories made and renamed around old files, hard links, --path-map,
// timestamps, interrupted rollbacks run again, exempt paths after a move, conflicts. Each is
// checked against an uninterrupted run (files_ops: its link, symlink, cat and rmdirq ops).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fixture, stasis, stasisBin, tree } from './helpers.js';
import { checkpointContinueKill, restartMatches, uninterrupted as oneRun, type Run, type RunHow } from './rollback-run.js';

const PROG = fixture('files_ops');

type How = RunHow & {
  /** launch options; `data` is the directory the program's files are in. */
  options?: (root: string, data: string) => string[];
};

const run = (args: string[], how: How = {}): Promise<Run> => checkpointContinueKill(PROG, () => args, how.options ?? [], undefined, how);
const uninterrupted = (args: string[], files: Record<string, string> = {}): { out: string; tree: Map<string, string> } => oneRun(PROG, () => args, files);


/** Checkpointed at its first pause, continued, killed at its second, restarted: as one uninterrupted run. */
async function restartsAsOneRun(args: string[]): Promise<void> {
  const ref = uninterrupted(args);
  const r = await run(args);
  try {
    restartMatches(r, ref);
  } finally {
    r.cleanup();
  }
}

test('a directory made after the checkpoint, a checkpoint-time file moved into it, the directory renamed: the file comes back', async () => {
  const args = ['open:0:/data/f:w', 'write:0:CHECKPOINT-F', 'close:0', 'pause',
    'mkdir:/data/t', 'rename:/data/f:/data/t/f', 'rename:/data/t:/data/u', 'cat:/data/u/f', 'pause', 'print:end'];
  await restartsAsOneRun(args);
});

test('a new directory renamed away, an old one renamed to its name, a file in it unlinked: the old file comes back', async () => {
  const args = ['mkdir:/data/c', 'open:0:/data/c/x:w', 'write:0:CHECKPOINT-X', 'close:0', 'pause', 'cat:/data/c/x',
    'mkdir:/data/d', 'open:1:/data/d/x:w', 'write:1:NEW', 'close:1', 'rename:/data/d:/data/e',
    'rename:/data/c:/data/d', 'unlink:/data/d/x', 'pause', 'print:end'];
  const ref = uninterrupted(args);
  const r = await run(args);
  try {
    const x = stasis(['restart', '--quiet', r.ckpt], { input: 'go\ngo\n', cwd: r.root });
    assert.equal(r.before + x.stdout, ref.out, x.stderr);
  } finally {
    r.cleanup();
  }
});

test('a hard link made after the checkpoint to an old file, written through: the old file\'s contents come back', async () => {
  const args = ['open:0:/data/f:w', 'write:0:ORIGINAL', 'close:0', 'pause', 'cat:/data/f',
    'link:/data/f:/data/g', 'open:1:/data/g:rw', 'write:1:CHANGED', 'close:1', 'unlink:/data/g', 'pause', 'print:end'];
  await restartsAsOneRun(args);
});

test('a hard link made after the checkpoint, opened, then the old name unlinked: the old file comes back', async () => {
  const args = ['open:0:/data/f:w', 'write:0:ORIGINAL', 'close:0', 'pause', 'cat:/data/f',
    'link:/data/f:/data/g', 'open:1:/data/g:r', 'close:1', 'unlink:/data/f', 'unlink:/data/g', 'pause', 'print:end'];
  await restartsAsOneRun(args);
});

test('--path-map at launch moving the program\'s directory: the rollback still happens', async () => {
  const args = ['open:0:/data/f:w', 'write:0:CHECKPOINT', 'close:0', 'pause', 'cat:/data/f',
    'open:1:/data/f:rw', 'write:1:LATER', 'close:1', 'open:2:/data/new:w', 'close:2', 'pause', 'print:end'];
  const ref = uninterrupted(args);
  let real = '';
  const r = await run(args, {
    options: (root, data) => {
      real = join(root, 'real');
      mkdirSync(real);
      return ['--path-map', `${data}=${real}`];
    },
  });
  try {
    const x = stasis(['restart', '--quiet', r.ckpt], { input: 'go\ngo\n', cwd: r.root });
    assert.equal(r.before + x.stdout, ref.out, x.stderr);
    assert.deepEqual(tree(real), ref.tree);
  } finally {
    r.cleanup();
  }
});

test('an interrupted rollback of a sealed journal can be run again (nobody else changed anything: no conflict)', async () => {
  const args = ['mkdir:/data/sub', 'open:0:/data/sub/db:w', 'write:0:CHECKPOINT-DB', 'close:0',
    'open:1:/data/r:w', 'write:1:R', 'close:1', 'pause',
    'open:2:/data/sub/db:w', 'write:2:LATER', 'close:2', 'unlink:/data/r', 'pause', 'print:end'];
  const ref = uninterrupted(args);
  const r = await run(args, { finish: true });
  try {
    await interruptedRollback(r);
    assert.ok(existsSync(join(r.data, 'r')), 'r was put back by the first attempt');
    // Nobody else changed anything: the rollback should go on where it stopped.
    const again = stasis(['restart', '--quiet', r.ckpt], { input: 'go\ngo\n', cwd: r.root });
    assert.equal(again.code, 0, again.stderr);
    assert.equal(r.before + again.stdout, ref.out);
    assert.deepEqual(tree(r.data), ref.tree);
  } finally {
    r.cleanup();
  }
});

/** Modification times of everything below dir. */
function mtimes(dir: string, prefix = '', out: Record<string, string> = {}): Record<string, string> {
  out[prefix === '' ? '.' : prefix] = String(lstatSync(dir, { bigint: true }).mtimeNs);
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    const st = lstatSync(p, { bigint: true });
    if (st.isDirectory()) mtimes(p, `${prefix}${name}/`, out);
    else out[prefix + name] = String(st.mtimeNs);
  }
  return out;
}

function timesAfterRestart(r: Run): Record<string, string> {
  const plugin = join(r.root, 'times.mjs');
  const seen = join(r.root, 'times.json');
  writeFileSync(plugin, `import { lstatSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
${mtimes.toString().replace(/: [A-Za-z<>, ]+(?=[,)=])/g, '').replace(/\): Record<string, string> \{/, ') {')}
export default { name: 'times', onRestart() { writeFileSync(${JSON.stringify(seen)}, JSON.stringify(mtimes(${JSON.stringify(r.data)}))); } };
`);
  const x = stasis(['restart', '--quiet', '--plugin', plugin, r.ckpt], { input: 'go\ngo\n', cwd: r.root });
  assert.equal(x.code, 0, x.stderr);
  return JSON.parse(readFileSync(seen, 'utf8')) as Record<string, string>;
}

test('times: the output directory rotated (rename out -> out.1, mkdir out, write out/f): out keeps its checkpoint mtime', async () => {
  let atCheckpoint: Record<string, string> = {};
  const args = ['mkdir:/data/out', 'open:0:/data/out/a:w', 'write:0:A', 'close:0', 'pause',
    'rename:/data/out:/data/out.1', 'mkdir:/data/out', 'open:1:/data/out/f:w', 'write:1:F', 'close:1', 'pause', 'print:end'];
  const r = await run(args, { atCheckpoint: (d) => { atCheckpoint = mtimes(d); } });
  try {
    await new Promise((res) => setTimeout(res, 50));
    assert.deepEqual(timesAfterRestart(r), atCheckpoint);
  } finally {
    r.cleanup();
  }
});

test('times: an empty checkpoint-time directory removed comes back with its checkpoint mtime', async () => {
  let atCheckpoint: Record<string, string> = {};
  const args = ['mkdir:/data/empty', 'pause', 'rmdir:/data/empty', 'pause', 'print:end'];
  const r = await run(args, { atCheckpoint: (d) => { atCheckpoint = mtimes(d); } });
  try {
    await new Promise((res) => setTimeout(res, 50));
    assert.deepEqual(timesAfterRestart(r), atCheckpoint);
  } finally {
    r.cleanup();
  }
});

test('an output made under an exempt directory and renamed out of it is left as it is', async () => {
  const args = ['mkdir:/data/out', 'pause', 'open:0:/data/out/r1:w', 'write:0:R1', 'close:0',
    'rename:/data/out/r1:/data/final-r1', 'pause', 'print:end'];
  const r = await run(args, { options: () => ['--rollback-exempt', 'out'] });
  try {
    const dry = stasis(['restart', '--dry-run', r.ckpt], { cwd: r.root });
    assert.doesNotMatch(dry.stdout, /final-r1: made after the checkpoint: moved to kept/);
  } finally {
    r.cleanup();
  }
});

/** Restarts with the program's directory `sub` swapped for a link once the rollback is planned:
 *  the rollback stops (77) part-way; then `sub` is put back. */
async function interruptedRollback(r: Run): Promise<string> {
  const go = join(r.root, 'go');
  const restart = spawn(process.execPath, [stasisBin, 'restart', '--quiet', r.ckpt], {
    stdio: ['pipe', 'pipe', 'pipe'], cwd: r.root, env: { ...process.env, STASIS_TEST_PAUSE: 'restart', STASIS_TEST_CONTINUE: go },
  });
  restart.stdin!.end('go\n');
  let err = '';
  const closed = new Promise<number | null>((res) => restart.on('close', res));
  await new Promise<void>((resolve) => restart.stderr!.on('data', (d: Buffer) => {
    err += d.toString();
    if (err.includes('paused at restart')) resolve();
  }));
  const outside = join(r.root, 'outside');
  mkdirSync(outside, { recursive: true });
  renameSync(join(r.data, 'sub'), join(r.data, 'sub.away'));
  symlinkSync('../outside', join(r.data, 'sub'));
  writeFileSync(go, '');
  assert.equal(await closed, 77, err);
  rmSync(join(r.data, 'sub'));
  renameSync(join(r.data, 'sub.away'), join(r.data, 'sub'));
  return err;
}

test('interrupted rollback, run again: rename a -> b then unlink b', async () => {
  const args = ['mkdir:/data/sub', 'open:0:/data/sub/db:w', 'write:0:CHECKPOINT-DB', 'close:0',
    'open:1:/data/a:w', 'write:1:CHECKPOINT-A', 'close:1', 'pause', 'cat:/data/a',
    'open:2:/data/sub/db:w', 'write:2:LATER', 'close:2', 'rename:/data/a:/data/b', 'unlink:/data/b', 'pause', 'print:end'];
  const ref = uninterrupted(args);
  const r = await run(args);
  try {
    await interruptedRollback(r);
    restartMatches(r, ref);
  } finally {
    r.cleanup();
  }
});

test('interrupted rollback, run again: rename a over f, then write f: f is not overwritten with a\'s bytes', async () => {
  const args = ['mkdir:/data/sub', 'open:0:/data/sub/db:w', 'write:0:CHECKPOINT-DB', 'close:0',
    'open:1:/data/a:w', 'write:1:aaaa', 'close:1', 'open:2:/data/f:w', 'write:2:ffffffffffff', 'close:2', 'pause', 'cat:/data/a', 'cat:/data/f',
    'open:3:/data/sub/db:w', 'write:3:LATER', 'close:3', 'rename:/data/a:/data/f', 'open:4:/data/f:rw', 'write:4:XX', 'close:4', 'pause', 'print:end'];
  const ref = uninterrupted(args);
  const r = await run(args);
  try {
    await interruptedRollback(r);
    restartMatches(r, ref);
  } finally {
    r.cleanup();
  }
});

test('--rollback-exempt DATA/out from launch still exempts out/ after the directory moved (--dir at restart)', async () => {
  const args = ['mkdir:/data/out', 'pause', 'open:0:/data/out/r1:w', 'write:0:R1', 'close:0', 'pause', 'print:end'];
  const r = await run(args, { options: (_root, data) => ['--rollback-exempt', join(data, 'out')] });
  try {
    const moved = join(r.root, 'moved');
    renameSync(r.data, moved);
    const dry = stasis(['restart', '--dry-run', '--dir', `${moved}::/data`, r.ckpt], { cwd: r.root });
    assert.match(dry.stdout, /out\/r1: left as it is/);
  } finally {
    r.cleanup();
  }
});

test('an unrelated file made in the same directory after the program ended is not a conflict', async () => {
  const args = ['open:0:/data/f:w', 'write:0:F', 'close:0', 'pause', 'open:1:/data/new:w', 'write:1:N', 'close:1', 'pause', 'print:end'];
  const r = await run(args, { finish: true });
  try {
    writeFileSync(join(r.root, 'data', 'slurm-123.out'), 'unrelated\n');
    const x = stasis(['restart', '--quiet', r.ckpt], { input: 'go\ngo\n', cwd: r.root });
    assert.equal(x.code, 0, x.stderr);
  } finally {
    r.cleanup();
  }
});

test('many files made and removed in one directory after the checkpoint: one of them made again by another process after the program stopped is a conflict (76, nothing changed); unrelated ones are not', async () => {
  const made = Array.from({ length: 24 }, (_, i) => `/data/r${i}`);
  const args = ['open:0:/data/f:w', 'write:0:F', 'close:0', 'pause',
    ...made.flatMap((p, i) => [`open:${i % 4}:${p}:w`, `write:${i % 4}:R${i}`, `close:${i % 4}`]), ...made.slice(0, 20).map((p) => `unlink:${p}`),
    'pause', 'print:end'];
  const ref = uninterrupted(args);
  const r = await run(args, { finish: true });
  try {
    writeFileSync(join(r.data, 'unrelated'), 'x');
    writeFileSync(join(r.data, 'r7'), 'made again by another process');
    const before = tree(r.data);
    const x = stasis(['restart', '--quiet', r.ckpt], { input: 'go\ngo\n', cwd: r.root });
    assert.equal(x.code, 76, x.stderr);
    assert.match(x.stderr, /another process changed \S*\/r7,/);
    assert.deepEqual(tree(r.data), before);
    rmSync(join(r.data, 'r7'));
    rmSync(join(r.data, 'unrelated'));
    restartMatches(r, ref);
  } finally {
    r.cleanup();
  }
});

test('changes that fail leave nothing wrong behind: a rename onto a non-empty directory and an rmdir of one, then the same names opened with O_CREAT and written', async () => {
  const args = ['open:0:/data/a:w', 'write:0:CHECKPOINT-A', 'close:0', 'mkdir:/data/d', 'open:1:/data/d/x:w', 'write:1:X', 'close:1', 'pause',
    'renameq:/data/a:/data/d', 'open:2:/data/a:w', 'write:2:LATER', 'close:2',
    'rmdirq:/data/d', 'rename:/data/d/x:/data/d/y', 'renameq:/data/nothing:/data/b', 'open:3:/data/b:w', 'write:3:B', 'close:3',
    'pause', 'cat:/data/a', 'print:end'];
  await restartsAsOneRun(args);
});

test('stopped by SIGTERM (a second checkpoint), the launcher seals the journals: a restart from the first image refuses (76) when another process made again a file the program removed', async () => {
  const made = Array.from({ length: 20 }, (_, i) => `/data/r${i}`);
  const args = ['open:0:/data/f:w', 'write:0:F', 'close:0', 'pause',
    ...made.flatMap((p) => [`open:0:${p}:w`, 'write:0:R', 'close:0']), ...made.map((p) => `unlink:${p}`), 'unlink:/data/f',
    'pause', 'print:end'];
  const r = await run(args, { term: true });
  try {
    const first = join(r.ckpt, 'images', readdirSync(join(r.ckpt, 'images')).sort()[0]!);
    writeFileSync(join(r.data, 'r3'), 'made again by another process');
    const before = tree(r.data);
    const x = stasis(['restart', '--quiet', first], { input: 'go\ngo\n', cwd: r.root });
    assert.equal(x.code, 76, x.stderr);
    assert.match(x.stderr, /another process changed \S*\/r3,/);
    assert.deepEqual(tree(r.data), before);
  } finally {
    r.cleanup();
  }
});

// 6c. Times of a file renamed and then written (log rotation with the fd kept open): the
// 'size' entry's times are filed under the new name, which no longer exists once the rename is
// undone: the file keeps the rollback's own mtime.
test('times: a log renamed (rotated) and written through its open fd keeps its checkpoint mtime', async () => {
  let atCheckpoint: Record<string, string> = {};
  const args = ['open:0:/data/app.log:a', 'write:0:one\\n', 'pause', 'rename:/data/app.log:/data/app.log.1', 'write:0:two\\n', 'pause', 'print:end'];
  const r = await run(args, { atCheckpoint: (d) => { atCheckpoint = mtimes(d); } });
  try {
    await new Promise((res) => setTimeout(res, 50));
    assert.deepEqual(timesAfterRestart(r), atCheckpoint);
  } finally {
    r.cleanup();
  }
});

test('another process changed in place a file the program had renamed: its checkpoint contents were never saved, so even --allow-file-overwrite refuses (76), changing nothing', async () => {
  const args = ['open:0:/data/a:w', 'write:0:A', 'close:0', 'open:1:/data/f:w', 'write:1:F', 'close:1', 'pause',
    'cat:/data/a', 'cat:/data/f', 'rename:/data/a:/data/f', 'pause', 'print:end'];
  const r = await run(args, { finish: true });
  try {
    writeFileSync(join(r.data, 'f'), 'A+OTHER');
    const before = tree(r.data);
    for (const extra of [[], ['--allow-file-overwrite']]) {
      const x = stasis(['restart', '--quiet', ...extra, r.ckpt], { input: 'go\ngo\n', cwd: r.root });
      assert.equal(x.code, 76, x.stderr);
      assert.match(x.stderr, /^stasis: restart refused, nothing changed: since the program stopped, another process changed \S*\/f, which the program had renamed after the checkpoint; [^\n]*\n$/);
      assert.deepEqual(tree(r.data), before);
    }
  } finally {
    r.cleanup();
  }
});

test('a rename onto a name that is there (the kernel refuses it without replacing, then it is replaced): the old target comes back', async () => {
  const args = ['open:0:/data/a:w', 'write:0:CHECKPOINT-A', 'close:0', 'open:1:/data/f:w', 'write:1:CHECKPOINT-F', 'close:1',
    'mkdir:/data/d', 'open:2:/data/d/x:w', 'write:2:X', 'close:2', 'mkdir:/data/e', 'pause', 'cat:/data/f',
    'rename:/data/a:/data/f', 'rename:/data/d:/data/e', 'cat:/data/f', 'cat:/data/e/x', 'pause', 'cat:/data/f', 'print:end'];
  await restartsAsOneRun(args);
});

test('a rename that fails (a file onto a directory) after its entry is in the journal, then its source removed: the directory is left as it was', async () => {
  const args = ['mkdir:/data/d', 'open:0:/data/d/x:w', 'write:0:CHECKPOINT-X', 'close:0', 'pause',
    'open:1:/data/t:w', 'write:1:T', 'close:1', 'renameq:/data/t:/data/d', 'unlink:/data/t', 'pause', 'cat:/data/d/x', 'print:end'];
  await restartsAsOneRun(args);
});

test('O_CREAT|O_EXCL of a name there at the checkpoint fails and leaves it; a name made so after the checkpoint is made again after the restart', async () => {
  const args = ['open:0:/data/f:w', 'write:0:CHECKPOINT-F', 'close:0', 'pause',
    'excl:/data/f', 'excl:/data/g', 'pause', 'excl:/data/f', 'excl:/data/g', 'cat:/data/f', 'print:end'];
  await restartsAsOneRun(args);
});

for (const [what, target] of [['nothing there', '/data/b'], ['a checkpoint-time file there', '/data/f']] as const) {
  test(`killed after a rename's journal entry, before the rename (${what}): the restart finishes as an uninterrupted run`, async () => {
    const args = ['open:0:/data/a:w', 'write:0:CHECKPOINT-A', 'close:0', 'open:1:/data/f:w', 'write:1:CHECKPOINT-F', 'close:1', 'pause',
      'open:2:/data/t:w', 'write:2:T', 'close:2', `rename:/data/a:${target}`, 'pause', 'cat:/data/a', `cat:${target}`, 'cat:/data/t', 'print:end'];
    const ref = uninterrupted(args);
    const r = await run(args, { env: { ...process.env, STASIS_TEST_PAUSE: 'journal-rename' }, killAt: 'paused at journal-rename' });
    try {
      assert.ok(existsSync(join(r.data, 'a')), 'the rename was not made');
      restartMatches(r, ref);
    } finally {
      r.cleanup();
    }
  });
}
