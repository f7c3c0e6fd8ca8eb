// A real database under checkpoint/restart: SQLite (test/fixtures/src/sqlite_job.c) with a page
// cache far smaller than its database, so each transaction writes pages into the database
// file before it commits and keeps a hot rollback journal beside it until then. Checkpointed
// in the middle of a transaction or between two, continued, its launcher killed (SIGKILL) in
// the middle of a later transaction or between two, restarted in a new process: the restarted
// run must print what an uninterrupted run prints (its integrity_check ok, its table's digest)
// and leave the same bytes on disk (so the same table, as intact). Under --no-rollback
// (DMTCP's rules) the same runs are refused or end with a locked, then corrupt, database.
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdirSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';
import { fixture, stasis, stasisBin, tempDir, tree } from './helpers.js';

const prog = fixture('sqlite_job');

before(() => {
  // Instrumenting SQLite (1.3 MB) takes seconds, a minute on a loaded machine: done once, by
  // this first launch (the job without arguments only prints its usage), into the module cache
  // (STASIS_CACHE_DIR, else the user's) where every launch below finds it.
  const { dir, cleanup } = tempDir();
  try {
    const r = stasis(['launch', '--quiet', '--ckpt-dir', join(dir, 'ckpt'), prog], { timeout: 900_000 });
    assert.equal(r.code, 2, r.stderr);
  } finally {
    cleanup();
  }
});

/** The integrity check and the whole table, as a new process opening data/app.db sees them. */
function dump(data: string): ReturnType<typeof stasis> {
  return stasis(['run', '--compile', 'tiered', '--dir', `${data}::/data`, prog, '/data/app.db', '--dump']);
}

interface Reference {
  out: string;
  tree: Map<string, string>;
}

const references = new Map<string, Reference>();

/** The job run to the end in one process with these ARGS, its pauses answered at once. */
function uninterrupted(args: string[]): Reference {
  const key = args.join(' ');
  const known = references.get(key);
  if (known !== undefined) return known;
  const { dir, cleanup } = tempDir();
  try {
    const data = join(dir, 'data');
    mkdirSync(data);
    const r = stasis(['run', '--compile', 'tiered', '--dir', `${data}::/data`, prog, '/data/app.db', ...args], { input: 'go\n'.repeat(args.length) });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const ref = { out: r.stdout, tree: tree(data) };
    references.set(key, ref);
    return ref;
  } finally {
    cleanup();
  }
}

/** `stasis ARGS` in the background, its output collected. */
function background(args: string[], cwd: string): { child: ChildProcessWithoutNullStreams; out: () => string; paused: (n: number) => Promise<void>; kill: () => Promise<void> } {
  const child = spawn(process.execPath, [stasisBin, ...args], { stdio: ['pipe', 'pipe', 'pipe'], cwd });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const closed = new Promise<void>((resolve) => child.on('close', () => resolve()));
  return {
    child,
    out: () => out,
    // Resolves once the program has printed its Nth "paused" (it then waits on stdin).
    paused: (n) => new Promise((resolve, reject) => {
      const check = (): void => {
        if (out.split('paused\n').length - 1 >= n) resolve();
      };
      child.stdout.on('data', check);
      void closed.then(() => reject(new Error(`${args[0]} ended (${child.exitCode}) before pause ${n}: ${out}${err}`)));
      check();
    }),
    kill: async () => {
      child.kill('SIGKILL');
      await closed;
    },
  };
}

interface Killed {
  /** The launcher's output up to its first pause, where it was first checkpointed. */
  before: string;
  /** The program's directory as it was at the first checkpoint. */
  atCheckpoint: Map<string, string>;
  root: string;
  data: string;
  ckpt: string;
  cleanup: () => void;
}

/**
 * Launches the job with ARGS on a fresh directory, checkpoints it at each of its first
 * CHECKPOINTS pauses, lets it go on to the next one and kills the launcher there (SIGKILL).
 */
async function checkpointContinueKill(args: string[], launchOptions: string[] = [], checkpoints = 1): Promise<Killed> {
  const { dir: root, cleanup } = tempDir();
  const data = join(root, 'data');
  const ckpt = join(root, 'ckpt');
  mkdirSync(data);
  const name = `sqlite-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  const job = background(['launch', '--quiet', '--name', name, '--ckpt-dir', ckpt, '--dir', `${data}::/data`, ...launchOptions,
    prog, '/data/app.db', ...args], root);
  try {
    await job.paused(1);
    const before = job.out();
    const atCheckpoint = tree(data);
    for (let n = 1; n <= checkpoints; n++) {
      await job.paused(n);
      const cp = stasis(['checkpoint', '--json', name]);
      assert.equal(cp.code, 0, cp.stderr);
      job.child.stdin.write('go\n');
    }
    await job.paused(checkpoints + 1);
    await job.kill();
    return { before, atCheckpoint, root, data, ckpt, cleanup };
  } catch (e) {
    await job.kill();
    cleanup();
    throw e;
  }
}

/** Restarts the job from IMAGE (default: the newest), answering its PAUSES (it is back in the first). */
function restart(run: Killed, options: string[] = [], pauses = 2, image = run.ckpt): ReturnType<typeof stasis> {
  return stasis(['restart', '--quiet', ...options, image], { input: 'go\n'.repeat(pauses), cwd: run.root });
}

/** The restarted job finished as one run: same output (integrity_check ok, the table's digest), the same bytes on disk. */
function sameAsOneRun(run: Killed, r: ReturnType<typeof stasis>, ref: Reference): void {
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.equal(run.before + r.stdout, ref.out);
  assert.match(r.stdout, /^integrity_check: ok\ntable: \d+ rows, digest [0-9a-f]{16}\n$/m);
  // The database alone is left (no journal, no lock directory), byte for byte as one run leaves it.
  assert.deepEqual([...tree(run.data).keys()], ['app.db']);
  assert.deepEqual(tree(run.data), ref.tree);
  // Everything rolled back or replaced was kept, and said so.
  assert.match(r.stderr, /kept in \S+\/kept\/\S+app\.db$/m);
}

test('checkpointed in the middle of a transaction (its pages partly in the database file, a hot journal beside it), more transactions, killed in the middle of another: the restart finishes as one run', async () => {
  const args = ['3m', '6m'];
  const ref = uninterrupted(args);
  const run = await checkpointContinueKill(args);
  try {
    // The checkpoint landed mid-transaction, with the database file already written to.
    const spilled = /^step 3: in a transaction, (\d+) dirty pages written to the database file so far$/m.exec(run.before);
    assert.ok(spilled && Number(spilled[1]) > 0, run.before);
    assert.deepEqual([...run.atCheckpoint.keys()], ['app.db', 'app.db-journal', 'app.db.lock/']);
    sameAsOneRun(run, restart(run), ref);
  } finally {
    run.cleanup();
  }
});

test('checkpointed in the middle of a transaction, killed between two later ones: the restart finishes as one run; with --no-rollback (DMTCP) the checkpoint\'s journal is gone and the restart is refused', async () => {
  const args = ['3m', '6e'];
  const ref = uninterrupted(args);
  const run = await checkpointContinueKill(args);
  try {
    sameAsOneRun(run, restart(run), ref);
  } finally {
    run.cleanup();
  }

  // DMTCP's rules: the journal open at the checkpoint is a log by its offset, not saved; the
  // transaction's commit deleted it.
  const dmtcp = await checkpointContinueKill(args, ['--no-rollback']);
  try {
    const atKill = tree(dmtcp.data);
    const r = restart(dmtcp);
    assert.equal(r.code, 74, r.stderr);
    assert.match(r.stderr, /^stasis: restart refused, nothing changed: \S+\/app\.db-journal .* is missing/);
    assert.deepEqual(tree(dmtcp.data), atKill);
  } finally {
    dmtcp.cleanup();
  }
});

test('checkpointed between transactions, killed in the middle of a later one: the restart finishes as one run; with --no-rollback (DMTCP) the restarted job finds the database locked, and once the stale lock is cleared SQLite plays the killed run\'s journal onto the restored file: corrupt', async () => {
  const args = ['3e', '6m'];
  const ref = uninterrupted(args);
  const run = await checkpointContinueKill(args);
  try {
    assert.deepEqual([...run.atCheckpoint.keys()], ['app.db']);
    sameAsOneRun(run, restart(run), ref);
  } finally {
    run.cleanup();
  }

  const dmtcp = await checkpointContinueKill(args, ['--no-rollback']);
  try {
    const r = restart(dmtcp);
    // app.db (open, offset before its end) was saved and put back; the killed transaction's
    // lock directory and hot journal were not open at the checkpoint and stay.
    assert.match(r.stderr, /replaced \S+\/app\.db by its saved copy/);
    assert.equal(r.code, 1, r.stderr);
    assert.equal(r.stdout, 'FAIL UPDATE: database is locked\n');
    assert.deepEqual([...tree(dmtcp.data).keys()], ['app.db', 'app.db-journal', 'app.db.lock/']);
    // What one does after a crash under dot-file locking: remove the stale lock, open the
    // database. SQLite rolls back the hot journal, which is of a later transaction.
    rmdirSync(join(dmtcp.data, 'app.db.lock'));
    const d = dump(dmtcp.data);
    assert.equal(d.code, 0, d.stdout + d.stderr);
    assert.doesNotMatch(d.stdout.split('\n')[0]!, /^integrity_check: ok$/, d.stdout.slice(0, 400));
  } finally {
    dmtcp.cleanup();
  }
});

test('the database closed between transactions (no fd on it at the first checkpoint), checkpointed again mid-transaction, killed mid-transaction; restarted from the first image, killed again, restarted from it again: its pages come back from the undo journals (both generations, and the restarted run\'s own) and the job finishes as one run', async () => {
  const args = ['close', '2e', '4m', '6m'];
  const ref = uninterrupted(args);
  const run = await checkpointContinueKill(args, [], 2);
  try {
    assert.deepEqual([...run.atCheckpoint.keys()], ['app.db']);
    const first = join(run.ckpt, 'images', 'gen-000001');
    const info = JSON.parse(stasis(['inspect', '--json', first]).stdout) as { files: unknown[] };
    assert.deepEqual(info.files, []);

    // Restarted from the first image, killed in the middle of step 6's transaction again.
    const again = background(['restart', '--quiet', first], run.root);
    again.child.stdin.write('go\ngo\n');
    await again.paused(2);
    await again.kill();
    assert.ok(ref.out.startsWith(run.before + again.out()), again.out());

    const r = restart(run, [], 3, first);
    assert.match(r.stderr, /rolled back \S+\/app\.db \(its contents changed after the checkpoint\)/);
    sameAsOneRun(run, r, ref);
  } finally {
    run.cleanup();
  }
});
