// Rollback, end to end: a real program changes its files after a checkpoint, its launcher is
// killed (SIGKILL, no cooperation from the program), and a restart in a new process must
// finish exactly as an uninterrupted run: same output, same files and directories (contents
// and modes) under its directory.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { appendFileSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fixture, stasis, stasisBin, tempDir, tree } from './helpers.js';
import { checkpointContinueKill, restartMatches, restartsAsOneRun, uninterrupted } from './rollback-run.js';

test('a data file written sequentially, then updated in place with pwrite: saved as a database (observed), restored; the restarted run prints what an uninterrupted one does', async () => {
  const prog = fixture('rollback_records');
  const args = (d: string): string[] => [`${d}/records.bin`];
  const ref = uninterrupted(prog, args);
  const run = await checkpointContinueKill(prog, args);
  try {
    // The fd's offset is at the end (a log, by the offset rule), but the program wrote over
    // its records: a database, and inspect says why.
    const info = JSON.parse(stasis(['inspect', '--json', run.ckpt]).stdout) as { files: { path: string; treatment: string; reason: string }[] };
    const rec = info.files.find((f) => f.path.endsWith('records.bin'))!;
    assert.equal(rec.treatment, 'save');
    assert.match(rec.reason, /^database \(observed: it wrote over existing bytes/);

    const dry = stasis(['restart', '--dry-run', run.ckpt]);
    assert.equal(dry.code, 0, dry.stderr);
    // Its contents come back from its saved copy (the journal's bytes are not needed).
    assert.doesNotMatch(dry.stdout, /^rollback /m);
    assert.match(dry.stdout, /^replace +\S*records\.bin: differs from its saved copy/m);

    const r = stasis(['restart', '--quiet', run.ckpt], { input: 'go\ngo\n', cwd: run.root });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(run.before + r.stdout, ref.out);
    assert.deepEqual(tree(run.data), ref.tree);
    // The version rolled back is kept and named.
    assert.match(r.stderr, /replaced \S*records\.bin by its saved copy; its previous version \(128 bytes\) kept in \S*kept/);
  } finally {
    run.cleanup();
  }
});

test('the same data file closed between steps (no fd open at the checkpoint): its overwritten records come back from the journal', async () => {
  const prog = fixture('rollback_records');
  const args = (d: string): string[] => [`${d}/records.bin`, 'close'];
  const ref = uninterrupted(prog, args);
  const run = await checkpointContinueKill(prog, args);
  try {
    const dry = stasis(['restart', '--dry-run', run.ckpt]);
    assert.equal(dry.code, 0, dry.stderr);
    assert.equal(dry.stdout, `rollback ${join(run.data, 'records.bin')}: contents put back as at the checkpoint (the current version kept)\n`);
    const atKill = readFileSync(join(run.data, 'records.bin'));
    const r = stasis(['restart', '--quiet', run.ckpt], { input: 'go\ngo\n', cwd: run.root });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(run.before + r.stdout, ref.out);
    assert.deepEqual(tree(run.data), ref.tree);
    const kept = /rolled back (\S*records\.bin) \(its contents changed after the checkpoint\); kept in (\S+)\n/.exec(r.stderr);
    assert.ok(kept, r.stderr);
    assert.deepEqual(readFileSync(kept[2]!), atKill);
    // The journal it undid is gone; the restarted run keeps its own and, having ended, seals
    // it (what the files were when it stopped: a later restart's conflict check).
    assert.deepEqual(readdirSync(join(run.ckpt, 'journal')), ['gen-000001', 'sealed.json']);
  } finally {
    run.cleanup();
  }
});

test('one result file per step (O_CREAT|O_EXCL, rename into place, unlink the one from 5 steps ago), a log, rename-over, mkdir/rmdir: checkpoint, more steps, SIGKILL, restart finishes as an uninterrupted run, twice from the same image', async () => {
  const prog = fixture('rollback_steps');
  const args = (d: string): string[] => [d];
  const ref = uninterrupted(prog, args);
  const run = await checkpointContinueKill(prog, args);
  try {
    const dry = stasis(['restart', '--dry-run', run.ckpt]);
    assert.equal(dry.code, 0, dry.stderr);
    const lines = dry.stdout.split('\n').filter((l) => l.startsWith('rollback '));
    // One line per path: results made and removed after the checkpoint, the log, the state...
    assert.equal(new Set(lines.map((l) => l.split(':')[0])).size, lines.length);
    const line = (path: string): string | undefined => lines.find((l) => l.startsWith(`rollback ${join(run.data, path)}: `))?.slice(`rollback ${join(run.data, path)}: `.length);
    assert.equal(line('result-012'), 'made after the checkpoint: moved to kept/', dry.stdout);
    assert.equal(line('result-003'), 'removed after the checkpoint: put back (file)', dry.stdout);
    assert.equal(line('state'), 'replaced after the checkpoint: its checkpoint version put back (file), the current one moved to kept/', dry.stdout);
    assert.equal(line('progress.log'), 'contents put back as at the checkpoint (the current version kept)', dry.stdout);
    assert.equal(line('batch-04'), 'made after the checkpoint: removed', dry.stdout);
    assert.equal(line('batch-02'), 'removed after the checkpoint: put back (dir)', dry.stdout);
    const atKill = tree(run.data);
    assert.deepEqual(tree(run.data), atKill, '--dry-run changed something');

    // A first restart, killed at the same point: a second restart from the same image still
    // starts from the checkpoint's files.
    const again = spawn(process.execPath, [stasisBin, 'restart', '--quiet', run.ckpt], { stdio: ['pipe', 'pipe', 'pipe'], cwd: run.root });
    let out = '';
    again.stdout.on('data', (d: Buffer) => (out += d.toString()));
    again.stdin.write('go\n');
    const closed = new Promise<void>((resolve) => again.on('close', () => resolve()));
    while (!out.includes('paused\n')) {
      assert.equal(again.exitCode, null, out);
      await new Promise((r) => setTimeout(r, 20));
    }
    again.kill('SIGKILL');
    await closed;
    assert.equal(run.before + out, ref.out.slice(0, (run.before + out).length));

    const r = stasis(['restart', '--quiet', run.ckpt], { input: 'go\ngo\n', cwd: run.root });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(run.before + r.stdout, ref.out);
    assert.deepEqual(tree(run.data), ref.tree);
    // Nothing lost: what was created after the checkpoint is kept, and reported.
    assert.match(r.stderr, /rolled back \S*result-012 \(made after the checkpoint\); kept in /);
    assert.ok(existsSync(join(run.ckpt, 'kept')));
  } finally {
    run.cleanup();
  }
});

test('--no-rollback is DMTCP\'s behaviour: at launch no journal and offsets decide; at restart nothing is undone', async () => {
  const records = fixture('rollback_records');
  const run = await checkpointContinueKill(records, (d) => [`${d}/records.bin`], ['--no-rollback']);
  try {
    const info = JSON.parse(stasis(['inspect', '--json', run.ckpt]).stdout) as { files: { path: string; treatment: string; reason: string }[] };
    const rec = info.files.find((f) => f.path.endsWith('records.bin'))!;
    assert.equal(rec.treatment, 'log');
    assert.match(rec.reason, /^log \(offset rule, no write observed: writable, offset at end\)/);
    assert.equal(existsSync(join(run.ckpt, 'journal')), false);
  } finally {
    run.cleanup();
  }

  // Journaled at launch, but restarted with --no-rollback: the files stay as the kill left
  // them, the journal too, and the program fails on its own unlink as under DMTCP.
  const steps = fixture('rollback_steps');
  const run2 = await checkpointContinueKill(steps, (d) => [d]);
  try {
    const atKill = tree(run2.data);
    const journal = tree(join(run2.ckpt, 'journal'));
    const dry = stasis(['restart', '--dry-run', '--no-rollback', run2.ckpt]);
    assert.equal(dry.code, 0, dry.stderr);
    assert.equal(dry.stdout, 'no open files\n');
    const r = stasis(['restart', '--quiet', '--no-rollback', run2.ckpt], { input: 'go\ngo\n', cwd: run2.root });
    assert.equal(r.code, 1, r.stderr);
    assert.equal(r.stdout, `FAIL unlink /data/result-003: No such file or directory\n`);
    // (Step 8 made its result again over the one the killed run made: the same bytes.)
    assert.deepEqual(tree(run2.data), atKill);
    assert.deepEqual(tree(join(run2.ckpt, 'journal')), journal);
  } finally {
    run2.cleanup();
  }
});

test('--keep 1: a second checkpoint prunes the first one\'s journal; a restart from it after the program ended undoes everything since', async () => {
  const prog = fixture('rollback_steps');
  const ref = uninterrupted(prog, (d) => [d]);
  const { dir, cleanup } = tempDir();
  try {
    const data = join(dir, 'data');
    const ckpt = join(dir, 'ckpt');
    mkdirSync(data);
    const name = `rollback-keep-${process.pid}`;
    const child = spawn(process.execPath, [stasisBin, 'launch', '--quiet', '--keep', '1', '--name', name, '--ckpt-dir', ckpt,
      '--dir', `${data}::/data`, prog, '/data'], { stdio: ['pipe', 'pipe', 'pipe'], cwd: dir });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    const paused = async (n: number): Promise<void> => {
      while (out.split('paused\n').length - 1 < n) {
        assert.equal(child.exitCode, null, out);
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    await paused(1);
    assert.equal(stasis(['checkpoint', name]).code, 0);
    child.stdin.write('go\n');
    await paused(2);
    const before = out;
    assert.equal(stasis(['checkpoint', name]).code, 0);
    assert.deepEqual(readdirSync(join(ckpt, 'journal')), [], 'the first journal was not pruned');
    child.stdin.end('go\n');
    assert.equal(await exited, 0);
    assert.equal(out, ref.out);
    assert.deepEqual(readdirSync(join(ckpt, 'journal')), ['gen-000002', 'sealed.json']);

    const r = stasis(['restart', '--quiet', ckpt], { input: 'go\n', cwd: dir });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(before + r.stdout, ref.out);
    assert.deepEqual(tree(data), ref.tree);
  } finally {
    cleanup();
  }
});

test('a tree of changes (an open file written over, appended, truncated and regrown; a closed multi-block file; nested directories made and renamed; the open file\'s directory renamed): restart finishes as an uninterrupted run', async () => {
  const prog = fixture('rollback_tree');
  const args = (d: string): string[] => [d];
  const ref = uninterrupted(prog, args);
  const run = await checkpointContinueKill(prog, args);
  try {
    const dry = stasis(['restart', '--dry-run', run.ckpt]);
    assert.equal(dry.code, 0, dry.stderr);
    const line = (p: string): string | undefined => dry.stdout.split('\n').find((l) => l.startsWith(`rollback ${join(run.data, p)}: `));
    assert.match(line('work-v2') ?? '', /: renamed back to \S*\/work$/, dry.stdout);
    assert.match(line('tree-11') ?? '', /: renamed back to \S*\/tree$/, dry.stdout);
    assert.match(line('big.dat') ?? '', /: contents put back as at the checkpoint/, dry.stdout);
    const r = stasis(['restart', '--quiet', run.ckpt], { input: 'go\ngo\n', cwd: run.root });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(run.before + r.stdout, ref.out);
    assert.deepEqual(tree(run.data), ref.tree);
  } finally {
    run.cleanup();
  }
});

/** A writable directory on another file system than the temporary one, if there is one. */
function otherFileSystem(): string | null {
  for (const d of ['/dev/shm', '/run/user/' + String(process.getuid?.() ?? '')]) {
    try {
      if (statSync(d).dev !== statSync(tmpdir()).dev) {
        rmSync(mkdtempSync(join(d, 'stasis-probe-')), { recursive: true });
        return d;
      }
    } catch {
      // not there, or not writable
    }
  }
  return null;
}

test('the checkpoint directory on another file system: removed files are copied into the journal and moved back across', async (t) => {
  const other = otherFileSystem();
  if (other === null) {
    t.skip('no writable directory on another file system than the temporary one (/dev/shm)');
    return;
  }
  const prog = fixture('rollback_steps');
  const args = (d: string): string[] => [d];
  const ref = uninterrupted(prog, args);
  const run = await checkpointContinueKill(prog, args, [], other);
  try {
    const r = stasis(['restart', '--quiet', run.ckpt], { input: 'go\ngo\n', cwd: run.root });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(run.before + r.stdout, ref.out);
    assert.deepEqual(tree(run.data), ref.tree);
    assert.match(r.stderr, /rolled back \S*result-012 \(made after the checkpoint\); kept in /);
  } finally {
    run.cleanup();
  }
});

test('--rollback-exempt (or `exempt` in a rules file): outputs the user wants kept are left as the program made them; the rest is rolled back; also given at restart', async () => {
  const prog = fixture('files_ops');
  // A result written into out/ and a scratch file, between the checkpoint and the kill.
  const args = (d: string): string[] => [`mkdir:${d}/out`, 'pause', `open:0:${d}/out/r1:w`, 'write:0:R1', 'close:0',
    `open:1:${d}/scratch:w`, 'write:1:S', 'close:1', 'pause', 'print:end'];
  const ref = uninterrupted(prog, args);
  const rulesDir = tempDir();
  const rulesFile = join(rulesDir.dir, 'rules.txt');
  writeFileSync(rulesFile, '# outputs\nexempt out\n'); // a name: any path named out, and what is below it
  // The same decision by a plugin's decideRollback, per path, given what the program did to it.
  const pluginFile = join(rulesDir.dir, 'keep-outputs.mjs');
  writeFileSync(pluginFile, `export default { name: 'keep-outputs', decideRollback(p, proposed) {
    if (!proposed.rollback) throw new Error('proposed ' + JSON.stringify(proposed));
    if (p.guestPath.startsWith('/data/out/')) return { rollback: false, reason: 'outputs: ' + p.changes.join(',') };
  } };\n`);
  for (const given of ['launch', 'rules file', 'restart', 'plugin'] as const) {
    const options = given === 'launch' ? ['--rollback-exempt', 'data/out'] : given === 'rules file' ? ['--file-rules', rulesFile] : [];
    const run = await checkpointContinueKill(prog, args, options);
    try {
      const at = given === 'restart' ? ['--rollback-exempt', join(run.data, 'out')] : given === 'plugin' ? ['--plugin', pluginFile] : [];
      const dry = stasis(['restart', '--dry-run', ...at, run.ckpt], { cwd: run.root });
      assert.equal(dry.code, 0, dry.stderr);
      const why = given === 'plugin' ? 'outputs: created' : `--rollback-exempt ${given === 'rules file' ? 'out' : join(run.data, 'out')}`;
      assert.match(dry.stdout, new RegExp(`^rollback ${join(run.data, 'out/r1')}: left as it is \\(${why}\\)$`, 'm'));
      assert.match(dry.stdout, new RegExp(`^rollback ${join(run.data, 'scratch')}: `, 'm'));
      const r = stasis(['restart', '--quiet', ...at, run.ckpt], { input: 'go\ngo\n', cwd: run.root });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(run.before + r.stdout, ref.out);
      assert.deepEqual(tree(run.data), ref.tree);
      assert.match(r.stderr, /rolled back \S*scratch \(made after the checkpoint\)/);
      assert.doesNotMatch(r.stderr, /out\/r1/); // never moved aside (the temporary dir's name may hold r1)
    } finally {
      run.cleanup();
    }
  }
  rulesDir.cleanup();
});

test('--rollback-exempt with an empty pattern is a usage error (64), nothing written', () => {
  const { dir, cleanup } = tempDir();
  try {
    const r = stasis(['launch', '--quiet', '--ckpt-dir', join(dir, 'ck'), '--rollback-exempt', '', fixture('files_ops'), 'print:x']);
    assert.equal(r.code, 64, r.stderr);
    assert.match(r.stderr, /^stasis: --rollback-exempt: empty pattern[^\n]*\n$/);
    assert.deepEqual(readdirSync(dir), []);
  } finally {
    cleanup();
  }
});

test('the rollback works beneath its directory: a directory swapped for a link during the restart stops it (77) with nothing outside changed; put back, the next restart finishes as one run', async () => {
  const prog = fixture('files_ops');
  const args = (d: string): string[] => [`mkdir:${d}/sub`, `open:0:${d}/sub/db:w`, 'write:0:CHECKPOINT-DB', 'close:0', 'pause',
    `open:1:${d}/sub/db:w`, 'write:1:LATER', 'close:1', `open:2:${d}/sub/new:w`, 'write:2:NEW', 'close:2', 'pause', 'print:end'];
  const ref = uninterrupted(prog, args);
  const run = await checkpointContinueKill(prog, args);
  try {
    const outside = join(run.root, 'outside');
    mkdirSync(outside);
    writeFileSync(join(outside, 'db'), 'OUTSIDE-DB');
    writeFileSync(join(outside, 'new'), 'OUTSIDE-NEW');
    const go = join(run.root, 'go');
    const restart = spawn(process.execPath, [stasisBin, 'restart', '--quiet', run.ckpt], {
      stdio: ['pipe', 'pipe', 'pipe'], cwd: run.root, env: { ...process.env, STASIS_TEST_PAUSE: 'restart', STASIS_TEST_CONTINUE: go },
    });
    restart.stdin!.end('go\n');
    let err = '';
    const closed = new Promise<number | null>((r) => restart.on('close', r));
    await new Promise<void>((resolve) => restart.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
      if (err.includes('paused at restart')) resolve();
    }));
    // The rollback is planned and checked; now the tree changes under it.
    renameSync(join(run.data, 'sub'), join(run.data, 'sub.away'));
    symlinkSync('../outside', join(run.data, 'sub'));
    writeFileSync(go, '');
    assert.equal(await closed, 77, err);
    assert.match(err, /\nstasis: restart stopped: during the rollback, a directory on the way to \S*sub\S* was replaced \(by a symbolic link or a file\)[^\n]*\n$/);
    assert.deepEqual(readdirSync(outside).sort(), ['db', 'new']);
    assert.equal(readFileSync(join(outside, 'db'), 'utf8'), 'OUTSIDE-DB');
    assert.equal(readFileSync(join(outside, 'new'), 'utf8'), 'OUTSIDE-NEW');

    rmSync(join(run.data, 'sub'));
    renameSync(join(run.data, 'sub.away'), join(run.data, 'sub'));
    const r = stasis(['restart', '--quiet', run.ckpt], { input: 'go\ngo\n', cwd: run.root });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(run.before + r.stdout, ref.out);
    assert.deepEqual(tree(run.data), ref.tree);
  } finally {
    run.cleanup();
  }
});

/** Modification times of everything below dir (and of dir itself, as '.'). */
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

test('after the rollback every file and directory has its checkpoint-time modification time (appended log, file renamed over, files and directories made and removed)', async () => {
  const prog = fixture('rollback_steps');
  let atCheckpoint: Record<string, string> = {};
  const run = await checkpointContinueKill(prog, (d) => [d], [], undefined, { atCheckpoint: (data) => (atCheckpoint = mtimes(data)) });
  try {
    // A plugin's onRestart runs once the files are in place, before the program goes on.
    const plugin = join(run.root, 'times.mjs');
    const seen = join(run.root, 'times.json');
    writeFileSync(plugin, `import { lstatSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
${mtimes.toString().replace(/: [A-Za-z<>, ]+(?=[,)=])/g, '').replace(/\): Record<string, string> \{/, ') {')}
export default { name: 'times', onRestart() { writeFileSync(${JSON.stringify(seen)}, JSON.stringify(mtimes(${JSON.stringify(run.data)}))); } };
`);
    const r = stasis(['restart', '--quiet', '--plugin', plugin, run.ckpt], { input: 'go\ngo\n', cwd: run.root });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(readFileSync(seen, 'utf8')), atCheckpoint);
  } finally {
    run.cleanup();
  }
});

test('a path another process changed after the program stopped is a conflict: the restart refuses (76) and changes nothing; with --allow-file-overwrite it rolls back and keeps that version', async () => {
  const prog = fixture('rollback_steps');
  const ref = uninterrupted(prog, (d) => [d]);
  const run = await checkpointContinueKill(prog, (d) => [d], [], undefined, { finish: true });
  try {
    // The program appended to progress.log after the checkpoint, and so does someone else now.
    appendFileSync(join(run.data, 'progress.log'), 'written by another process\n');
    const before = tree(run.data);
    const ckptBefore = tree(run.ckpt);
    const refused = stasis(['restart', '--quiet', run.ckpt], { input: 'go\ngo\n', cwd: run.root });
    assert.equal(refused.code, 76, refused.stderr);
    assert.match(refused.stderr, /^stasis: restart refused, nothing changed: since the program stopped, another process changed \S*progress\.log, which the program had changed after the checkpoint too; restart with --allow-file-overwrite[^\n]*\n$/);
    assert.deepEqual(tree(run.data), before);
    assert.deepEqual(tree(run.ckpt), ckptBefore);

    const dry = stasis(['restart', '--dry-run', '--allow-file-overwrite', run.ckpt], { cwd: run.root });
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stdout, /^rollback \S*progress\.log: changed by another process since the program stopped; rolled back anyway/m);
    const r = stasis(['restart', '--quiet', '--allow-file-overwrite', run.ckpt], { input: 'go\ngo\n', cwd: run.root });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(run.before + r.stdout, ref.out);
    assert.deepEqual(tree(run.data), ref.tree);
    const kept = /rolled back \S*progress\.log \(its contents changed after the checkpoint\); kept in (\S+)\n/.exec(r.stderr);
    assert.ok(kept, r.stderr);
    assert.match(readFileSync(kept[1]!, 'utf8'), /step 20\nwritten by another process\n$/);
  } finally {
    run.cleanup();
  }
});

test('a crash during a checkpoint: the launcher killed after the second capture, its image never written, while the program went on changing files; a restart from the first image finishes as an uninterrupted run', async () => {
  const prog = fixture('rollback_steps');
  const ref = uninterrupted(prog, (d) => [d]);
  const { dir, cleanup } = tempDir();
  try {
    const data = join(dir, 'data');
    const ckpt = join(dir, 'ckpt');
    mkdirSync(data);
    const go = join(dir, 'go');
    const name = `rollback-crash-${process.pid}`;
    const child = spawn(process.execPath, [stasisBin, 'launch', '--quiet', '--name', name, '--ckpt-dir', ckpt, '--dir', `${data}::/data`, prog, '/data'], {
      stdio: ['pipe', 'pipe', 'pipe'], cwd: dir, env: { ...process.env, STASIS_TEST_PAUSE: 'checkpoint', STASIS_TEST_CONTINUE: go },
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const closed = new Promise<void>((resolve) => child.on('close', () => resolve()));
    const until = async (what: () => boolean): Promise<void> => {
      while (!what()) {
        if (child.exitCode !== null) assert.fail(`launch ended (${child.exitCode}): ${out}${err}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    const count = (s: string, sub: string): number => s.split(sub).length - 1;
    await until(() => count(out, 'paused\n') === 1);
    const before = out;
    // The first checkpoint: let it through its pause.
    const first = spawn(process.execPath, [stasisBin, 'checkpoint', name], { stdio: 'ignore' });
    const firstClosed = new Promise((r) => first.on('close', r));
    await until(() => count(err, 'paused at checkpoint') === 1);
    writeFileSync(go, '');
    assert.equal(await firstClosed, 0);
    rmSync(go);
    child.stdin.write('go\n');
    await until(() => count(out, 'paused\n') === 2);
    // The second: captured, the program released, its image not written yet.
    const second = spawn(process.execPath, [stasisBin, 'checkpoint', name], { stdio: 'ignore' });
    // Listened to from the start: it may end before the launcher's close is seen.
    const secondClosed = new Promise((r) => second.on('close', r));
    await until(() => count(err, 'paused at checkpoint') === 2);
    child.stdin.end('go\n');
    await until(() => out.includes('final state: '));
    child.kill('SIGKILL');
    await closed;
    await secondClosed;
    assert.deepEqual(readdirSync(join(ckpt, 'images')), ['gen-000001']);
    // (Generation 2's journal holds what the program did after the second capture.)
    assert.deepEqual(readdirSync(join(ckpt, 'journal')).filter((n) => n.startsWith('gen-')).sort(), ['gen-000001', 'gen-000002']);

    const r = stasis(['restart', '--quiet', ckpt], { input: 'go\ngo\n', cwd: dir });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(before + r.stdout, ref.out);
    assert.deepEqual(tree(data), ref.tree);
  } finally {
    cleanup();
  }
});

test('the program\'s directory moved before the restart (--dir NEWHOST::/data): the journal is undone where the directory is now', async () => {
  const prog = fixture('rollback_steps');
  const ref = uninterrupted(prog, (d) => [d]);
  const run = await checkpointContinueKill(prog, (d) => [d]);
  try {
    const moved = join(run.root, 'moved');
    renameSync(run.data, moved);
    const dry = stasis(['restart', '--dry-run', '--dir', `${moved}::/data`, run.ckpt], { cwd: run.root });
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stdout, new RegExp(`^rollback ${join(moved, 'result-003')}: removed after the checkpoint: put back \\(file\\)$`, 'm'));
    assert.doesNotMatch(dry.stdout, /outside the program's directories/);
    const r = stasis(['restart', '--quiet', '--dir', `${moved}::/data`, run.ckpt], { input: 'go\ngo\n', cwd: run.root });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(run.before + r.stdout, ref.out);
    assert.deepEqual(tree(moved), ref.tree);
  } finally {
    run.cleanup();
  }
});

test('a path left as it is keeps the directory the program made for it after the checkpoint (its rollback would have moved the file away too)', async () => {
  const prog = fixture('files_ops');
  const args = (d: string): string[] => ['pause', `mkdir:${d}/out`, `open:0:${d}/out/r1:w`, 'write:0:R1', 'close:0',
    `open:1:${d}/scratch:w`, 'write:1:S', 'close:1', 'pause', 'print:end'];
  const run = await checkpointContinueKill(prog, args);
  try {
    const plugin = join(run.root, 'keep-r1.mjs');
    writeFileSync(plugin, `export default { name: 'keep-r1', decideRollback(p) { if (p.guestPath === '/data/out/r1') return { rollback: false, reason: 'the result' }; } };\n`);
    const dry = stasis(['restart', '--dry-run', '--plugin', plugin, run.ckpt], { cwd: run.root });
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stdout, new RegExp(`^rollback ${join(run.data, 'out')}: left as it is \\(holds ${join(run.data, 'out/r1')}, the result\\)$`, 'm'));
    assert.match(dry.stdout, new RegExp(`^rollback ${join(run.data, 'scratch')}: made after the checkpoint: moved to kept/$`, 'm'));
    // The program makes out/ again and fails there: keeping it is the user's choice for outputs.
    stasis(['restart', '--quiet', '--plugin', plugin, run.ckpt], { input: 'go\ngo\n', cwd: run.root });
    assert.equal(readFileSync(join(run.data, 'out/r1'), 'utf8'), 'R1');
  } finally {
    run.cleanup();
  }
});

test('made after the checkpoint, then renamed over an old file, renamed as a directory, removed with an fd still open and written: a restart finishes as one run', async () => {
  const prog = fixture('files_ops');
  const args = (d: string): string[] => [`open:0:${d}/keep:w`, 'write:0:CHECKPOINT', 'close:0', 'pause',
    `open:1:${d}/tmp:w`, 'write:1:NEW', 'close:1', `rename:${d}/tmp:${d}/keep`,
    `mkdir:${d}/d1`, `open:2:${d}/d1/x:w`, 'write:2:X', 'close:2', `rename:${d}/d1:${d}/d2`, `unlink:${d}/d2/x`, `rmdir:${d}/d2`,
    `open:3:${d}/gone:rwc`, 'write:3:G1', `unlink:${d}/gone`, 'pause', 'write:3:G2', 'dump:3', 'print:end'];
  await restartsAsOneRun(prog, args);
});

test('the same job over thousands of steps (more paths than the recorder keeps what it knows of): checkpoint, more steps, SIGKILL, restart finishes as an uninterrupted run', async () => {
  const prog = fixture('rollback_steps');
  const args = (d: string): string[] => [d, '150'];
  await restartsAsOneRun(prog, args);
});

test('one file reached two ways (below its preopen, and below the preopen opened again as a directory): made through one name, an old file renamed over it through the other, then written through the first; a restart finishes as one run', async () => {
  const prog = fixture('files_ops');
  const files = { old: 'OLD CONTENT' };
  const args = (d: string): string[] => ['pause', `opendir:5:${d}`, 'createat:6:5:x', 'close:6', `rename:${d}/old:${d}/x`,
    'openat:7:5:x', 'dump:7', 'write:7:NEW', 'pause', 'dump:7', 'print:end'];
  await restartsAsOneRun(prog, args, files);
});

test('files the program made with O_CREAT|O_EXCL are classified by what it did to them: one written over is a database, one only appended to a log', async () => {
  const prog = fixture('files_ops');
  const args = (d: string): string[] => [`opendir:5:${d}`, 'createat:6:5:db', 'write:6:AAAA', 'seek:6:1', 'write:6:B', 'seek:6:4',
    'createat:7:5:log', 'write:7:one\\n', 'write:7:two\\n', 'pause', 'write:6:C', 'write:7:three\\n', 'pause', 'dump:6', 'dump:7'];
  const ref = uninterrupted(prog, args);
  const run = await checkpointContinueKill(prog, args);
  try {
    const info = JSON.parse(stasis(['inspect', '--json', run.ckpt]).stdout) as { files: { path: string; treatment: string; reason: string }[] };
    const reason = (name: string): string => info.files.find((f) => f.path.endsWith(`/${name}`))!.reason;
    assert.match(reason('db'), /^database \(observed/);
    assert.match(reason('log'), /^log \(observed/);
    restartMatches(run, ref);
  } finally {
    run.cleanup();
  }
});

test('a directory, symlink or link made where something already was fails, and the restart leaves what was there (the journal recorded the attempt without looking first)', async () => {
  const prog = fixture('files_ops');
  const files = { 'd/in': 'inside', f: 'file f', t: 'file t' };
  const args = (d: string): string[] => ['pause', `mkdirq:${d}/d`, `mkdirq:${d}/f`, `symlinkq:t:${d}/f`, `symlinkq:t:${d}/d`, `linkq:${d}/t:${d}/f`,
    `linkq:${d}/t:${d}/d`, `mkdir:${d}/new`, `symlink:../t:${d}/new/s`, `link:${d}/t:${d}/new/l`, 'pause', `cat:${d}/f`, `cat:${d}/d/in`, `cat:${d}/new/l`];
  await restartsAsOneRun(prog, args, files);
});
