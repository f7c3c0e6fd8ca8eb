// Restart equivalence: a program checkpointed at any instant, killed and restarted in a new
// process must produce exactly the output and exit status of an uninterrupted run.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { fixture, stasis, stasisBin, tempDir, type RunResult } from './helpers.js';

const CHECKPOINTED = 75;

interface Case {
  name: string;
  args: string[];
  input?: string;
  /** Needs a preopened scratch directory as /work. */
  dir?: boolean;
  /** Calls to sample (the harness stops at the first that is past the end). */
  calls: number[];
}

const CASES: Case[] = [
  { name: 'ckpt_compute', args: ['4', '400000'], calls: [1, 2, 3, 4, 5, 6] },
  { name: 'ckpt_recursive', args: ['24'], calls: [1, 2, 3, 5, 8, 13, 21, 34] },
  { name: 'ckpt_sleep', args: ['4', '30'], calls: [1, 2, 3, 4, 6, 8, 10, 12, 14, 16] },
  { name: 'ckpt_stdin', args: [], input: 'alpha\nbeta\ngamma\ndelta\n', calls: [1, 2, 3, 4, 5, 6, 7, 9, 11] },
  { name: 'ckpt_fds', args: ['/work'], dir: true, calls: [1, 5, 13, 40, 77, 150, 300, 420, 600] },
  // Calls 1-4 are checkpointed; 5 is the failure report on the way to abort(): not served.
  { name: 'ckpt_ending', args: ['3'], calls: [1, 2, 3, 4, 5] },
];

function runArgs(c: Case, work: string): string[] {
  return [...(c.dir ? ['--dir', `${work}::/work`] : []), fixture(c.name), ...c.args];
}

/** Runs the case to completion with `stasis run`: the reference output. */
function reference(c: Case, work: string): RunResult {
  return stasis(['run', ...runArgs(c, work)], { input: c.input ?? '' });
}

/** The part of the input a program had not read yet: restarted programs get it as stdin. */
for (const c of CASES) {
  test(`restart equivalence at sampled WASI calls: ${c.name}`, () => {
    const { dir, cleanup } = tempDir();
    try {
      const refWork = join(dir, 'ref');
      mkdirSync(refWork);
      const ref = reference(c, refWork);
      assert.ok(ref.code !== null);
      let reachedEnd = false;
      for (const n of c.calls) {
        const work = join(dir, `w${n}`);
        const ckpt = join(dir, `ckpt${n}`);
        mkdirSync(work);
        const first = stasis(['launch', '--quiet', '--ckpt-dir', ckpt, '--checkpoint-at-call', String(n), ...runArgs(c, work)], { input: c.input ?? '' });
        if (first.code !== CHECKPOINTED) {
          // Past the program's last call: it ran to the end like the reference.
          assert.equal(first.code, ref.code, first.stderr);
          assert.equal(first.stdout, ref.stdout);
          reachedEnd = true;
          break;
        }
        // The restarted program reads its new stdin after what the image holds: feed it the
        // input from where the first process had got to (inspect tells).
        const info = JSON.parse(stasis(['inspect', '--json', ckpt]).stdout) as { snapshot?: { stdinReceived?: number }; stdinReceived?: number };
        const received = info.snapshot?.stdinReceived ?? info.stdinReceived;
        assert.equal(typeof received, 'number', JSON.stringify(info).slice(0, 400));
        const rest = Buffer.from(c.input ?? '').subarray(received!);
        const second = stasis(['restart', '--quiet', ckpt], { input: rest });
        assert.equal(second.code, ref.code, `call ${n}: ${second.stderr}`);
        assert.equal(first.stdout + second.stdout, ref.stdout, `call ${n}`);
        if (c.dir) {
          for (const f of readdirSync(refWork)) {
            assert.deepEqual(readFileSync(join(work, f)), readFileSync(join(refWork, f)), `call ${n}: ${f}`);
          }
        }
      }
      assert.ok(reachedEnd || c.calls.length > 0);
    } finally {
      cleanup();
    }
  });
}

/** Waits until a launched program answers on its control socket (or has already ended). */
async function waitRunning(name: string, child?: ReturnType<typeof spawn>): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (child?.exitCode !== null && child?.exitCode !== undefined) return;
    if (stasis(['status', name]).code === 0) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${name} never came up`);
}

function launchInBackground(args: string[], env = process.env, stdin: 'ignore' | 'pipe' = 'ignore'): { child: ReturnType<typeof spawn>; out: () => string; exit: Promise<number | null> } {
  const child = spawn(process.execPath, [stasisBin, 'launch', '--quiet', ...args], { stdio: [stdin, 'pipe', 'pipe'], env });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  const exit = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code))); // its output read to the end
  return { child, out: () => out, exit };
}

test('a checkpoint asked on the way to a trap is not served: the program reports and traps as it would', () => {
  const { dir, cleanup } = tempDir();
  try {
    const ref = stasis(['run', fixture('ckpt_ending'), '3']);
    assert.equal(ref.code, 134, ref.stderr);
    assert.match(ref.stderr, /^xalloc: cannot allocate 1073741824 bytes\nxalloc: giving up\nstasis: trap: unreachable in function 'abort'/);
    // Calls 5 and 6 are the report's two writes to stderr (1-4: isatty, three lines of stdout).
    for (const n of [5, 6]) {
      const ckpt = join(dir, `ckpt${n}`);
      const r = stasis(['launch', '--quiet', '--ckpt-dir', ckpt, '--checkpoint-at-call', String(n), fixture('ckpt_ending'), '3']);
      assert.equal(r.code, 134, `call ${n}: ${r.stderr}`);
      assert.equal(r.stdout, ref.stdout);
      assert.equal(r.stderr.replace(/\([^)]*\)\n$/, ''), ref.stderr.replace(/\([^)]*\)\n$/, ''), `call ${n}`);
      assert.ok(!existsSync(join(ckpt, 'images')) || readdirSync(join(ckpt, 'images')).length === 0, `call ${n}: an image was written`);
    }
    // The call before them is served.
    const before = stasis(['launch', '--quiet', '--ckpt-dir', join(dir, 'ckpt4'), '--checkpoint-at-call', '4', fixture('ckpt_ending'), '3']);
    assert.equal(before.code, CHECKPOINTED, before.stderr);
  } finally {
    cleanup();
  }
});

test('checkpoint at timed instants inside pure compute, kill, restart elsewhere', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const args = [fixture('ckpt_compute'), '12', '25000000'];
    const ref = stasis(['run', ...args]);
    // The compile mode is not part of the image: a program launched under one restarts under the other.
    for (const [delay, launchMode, restartMode] of [[150, 'tiered', 'optimized'], [420, 'optimized', 'tiered'], [800, 'optimized', 'optimized']] as const) {
      const ckpt = join(dir, `ckpt-${delay}`);
      const name = `compute-${delay}-${process.pid}`;
      const run = launchInBackground(['--compile', launchMode, '--ckpt-dir', ckpt, '--name', name, ...args]);
      await waitRunning(name, run.child);
      await new Promise((r) => setTimeout(r, delay));
      const cp = stasis(['checkpoint', '--exit', name]);
      if (cp.code !== 0) {
        // Finished before the request: then it must have run to the end.
        assert.equal(await run.exit, ref.code);
        continue;
      }
      assert.match(cp.stdout, /gen-\d+/);
      assert.equal(await run.exit, CHECKPOINTED);
      // A moved checkpoint directory still restarts.
      const moved = join(dir, `moved-${delay}`);
      renameSync(ckpt, moved);
      const second = stasis(['restart', '--quiet', '--compile', restartMode, moved]);
      assert.equal(second.code, ref.code, second.stderr);
      assert.equal(run.out() + second.stdout, ref.stdout);
    }
  } finally {
    cleanup();
  }
});

test('checkpoint, continue, checkpoint again; restart from the first image', async () => {
  const { dir, cleanup } = tempDir();
  try {
    // The program answers each line of input: the test feeds it one line at a time and waits
    // for the answer, so each checkpoint lands where it means to, however slow the machine.
    const lines = ['alpha\n', 'beta\n', 'gamma\n', 'delta\n'];
    const ref = stasis(['run', fixture('ckpt_stdin')], { input: lines.join('') });
    const ckpt = join(dir, 'ckpt');
    const name = `twice-${process.pid}`;
    const run = launchInBackground(['--ckpt-dir', ckpt, '--name', name, fixture('ckpt_stdin')], process.env, 'pipe');
    const answered = async (n: number): Promise<void> => {
      while (!run.out().includes(`${n}: `)) {
        assert.equal(run.child.exitCode, null, 'the launcher is still running');
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    run.child.stdin!.write(lines[0]);
    await answered(1);
    const first = stasis(['checkpoint', name]);
    assert.equal(first.code, 0, first.stderr);
    run.child.stdin!.write(lines[1]);
    await answered(2);
    const second = stasis(['checkpoint', name]);
    assert.equal(second.code, 0, second.stderr);
    assert.notEqual(first.stdout, second.stdout);
    run.child.stdin!.end(lines[2] + lines[3]);
    assert.equal(await run.exit, ref.code);
    assert.equal(run.out(), ref.stdout); // checkpoints do not disturb the run
    const fromFirst = stasis(['restart', '--quiet', first.stdout.trim()], { input: lines.slice(1).join('') });
    const fromSecond = stasis(['restart', '--quiet', second.stdout.trim()], { input: lines.slice(2).join('') });
    for (const r of [fromFirst, fromSecond]) {
      assert.equal(r.code, ref.code, r.stderr);
      assert.ok(ref.stdout.endsWith(r.stdout), r.stdout);
    }
    assert.ok(fromFirst.stdout.length > fromSecond.stdout.length);
  } finally {
    cleanup();
  }
});

test('SIGTERM checkpoints then exits 75; status and kill', async () => {
  const { dir, cleanup } = tempDir();
  try {
    // A program that waits for its next line: it cannot end before the signal, however slow the machine.
    const prog = fixture('ckpt_stdin');
    const ref = stasis(['run', prog], { input: 'one\ntwo\n' });
    const ckpt = join(dir, 'ckpt');
    const name = `term-${process.pid}`;
    const run = launchInBackground(['--ckpt-dir', ckpt, '--name', name, prog], process.env, 'pipe');
    await waitRunning(name, run.child);
    run.child.stdin!.write('one\n');
    while (!run.out().includes('1: ONE\n')) await new Promise((r) => setTimeout(r, 20));
    const st = stasis(['status', name, '--json']);
    assert.equal(st.code, 0, st.stderr);
    assert.equal((JSON.parse(st.stdout) as { name: string }).name, name);
    run.child.kill('SIGTERM');
    assert.equal(await run.exit, CHECKPOINTED);
    const rest = stasis(['restart', '--quiet', ckpt], { input: 'two\n' });
    assert.equal(rest.code, 0, rest.stderr);
    assert.equal(run.out() + rest.stdout, ref.stdout);

    const again = launchInBackground(['--ckpt-dir', join(dir, 'k'), '--name', `kill-${process.pid}`, prog], process.env, 'pipe');
    await waitRunning(`kill-${process.pid}`);
    assert.equal(stasis(['kill', `kill-${process.pid}`]).code, 0);
    assert.equal(await again.exit, 137);
    assert.equal(stasis(['status', `kill-${process.pid}`]).code, 69);
  } finally {
    cleanup();
  }
});

test('restart refuses bad images with one line and a distinct status, changing nothing', () => {
  const { dir, cleanup } = tempDir();
  try {
    const ckpt = join(dir, 'ckpt');
    const first = stasis(['launch', '--quiet', '--ckpt-dir', ckpt, '--checkpoint-at-call', '3', fixture('ckpt_sleep'), '3', '10']);
    assert.equal(first.code, CHECKPOINTED, first.stderr);
    writeFileSync(join(dir, 'not-an-image'), 'hello');
    const cases: [string[], number, RegExp][] = [
      [['restart', join(dir, 'nope')], 72, /./],
      [['restart', join(dir, 'not-an-image')], 72, /./],
      [['inspect', join(dir, 'not-an-image')], 72, /./],
    ];
    for (const [args, code, message] of cases) {
      const r = stasis(args);
      assert.equal(r.code, code, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, message);
      assert.match(r.stderr, /^stasis: [^\n]+\n$/);
    }
    // A damaged memory chunk: refused with 73, and the image is left as it was.
    const damaged = join(dir, 'damaged');
    cpSync(ckpt, damaged, { recursive: true });
    const chunkDir = join(damaged, 'chunks');
    const chunk = join(chunkDir, readdirSync(chunkDir)[0]!);
    const bytes = readFileSync(chunk);
    bytes[bytes.length >> 1] ^= 0xff;
    writeFileSync(chunk, bytes);
    const corrupt = stasis(['restart', '--quiet', damaged]);
    assert.equal(corrupt.code, 73, corrupt.stderr);
    assert.match(corrupt.stderr, /^stasis: [^\n]*chunk[^\n]*\n$/);
    assert.deepEqual(readFileSync(chunk), bytes);
    // A missing preopen directory at restart.
    const withDir = join(dir, 'ckpt2');
    const work = join(dir, 'work');
    mkdirSync(work);
    const f = stasis(['launch', '--quiet', '--ckpt-dir', withDir, '--checkpoint-at-call', '30', '--dir', `${work}::/work`, fixture('ckpt_fds'), '/work']);
    assert.equal(f.code, CHECKPOINTED, f.stderr);
    const elsewhere = join(dir, 'work-moved');
    cpSync(work, elsewhere, { recursive: true });
    renameSync(work, join(dir, 'gone'));
    const missing = stasis(['restart', '--quiet', withDir]);
    assert.equal(missing.code, 68, missing.stderr);
    assert.match(missing.stderr, /missing; restore it, or give --dir NEWHOST::\/work/);
    // A file the program had open, deleted since: refused with 74, naming it.
    const noFile = join(dir, 'work-nofile');
    cpSync(elsewhere, noFile, { recursive: true });
    const victim = readdirSync(noFile).find((f) => f.endsWith('.txt'))!;
    rmSync(join(noFile, victim));
    const gone = stasis(['restart', '--quiet', '--dir', `${noFile}::/work`, withDir]);
    assert.equal(gone.code, 74, gone.stderr);
    assert.match(gone.stderr, new RegExp(`the program's /work/${victim}.* is missing`));
    // ...and remapping it with --dir works.
    const remapped = stasis(['restart', '--quiet', '--dir', `${elsewhere}::/work`, withDir]);
    assert.equal(remapped.code, 0, remapped.stderr);
  } finally {
    cleanup();
  }
});

test('inspect shows what an image holds', () => {
  const { dir, cleanup } = tempDir();
  try {
    const ckpt = join(dir, 'ckpt');
    const r = stasis(['launch', '--quiet', '--ckpt-dir', ckpt, '--checkpoint-at-call', '2', fixture('ckpt_sleep'), '3', '10']);
    assert.equal(r.code, CHECKPOINTED, r.stderr);
    const info = stasis(['inspect', '--json', ckpt]);
    assert.equal(info.code, 0, info.stderr);
    const parsed = JSON.parse(info.stdout) as Record<string, unknown>;
    assert.ok(JSON.stringify(parsed).includes('ckpt_sleep'));
  } finally {
    cleanup();
  }
});

test('--interval checkpoints periodically and --keep prunes old images', async () => {
  const { dir, cleanup } = tempDir();
  try {
    // The program waits for its second line while the timer takes checkpoints, however slow
    // the machine: the test waits for the third image, not for a time.
    const input = 'alpha\nbeta\ngamma\ndelta\n';
    const ref = stasis(['run', fixture('ckpt_stdin')], { input });
    const ckpt = join(dir, 'ckpt');
    const name = `interval-${process.pid}`;
    const run = launchInBackground(['--name', name, '--ckpt-dir', ckpt, '--interval', '0.2', '--keep', '2', fixture('ckpt_stdin')], process.env, 'pipe');
    const child = run.child;
    child.stdin!.write('alpha\n');
    const newest = (): number => Math.max(0, ...readdirSync(join(ckpt, 'images'), { withFileTypes: true })
      .map((e) => /^gen-(\d+)$/.exec(e.name)).filter((m) => m !== null).map((m) => Number(m![1])));
    while (!existsSync(join(ckpt, 'images')) || newest() < 3) {
      assert.equal(child.exitCode, null, 'the launcher is still running');
      await new Promise((r) => setTimeout(r, 50));
    }
    const cp = stasis(['checkpoint', '--exit', name]);
    assert.equal(cp.code, 0, cp.stderr);
    assert.equal(await run.exit, CHECKPOINTED);
    const gens = readdirSync(join(ckpt, 'images')).filter((g) => g.startsWith('gen-')).sort();
    assert.equal(gens.length, 2, gens.join(' '));
    assert.ok(Number(gens[1]!.slice(4)) >= 4, `several checkpoints were taken: ${gens.join(' ')}`);
    // The newest kept image restarts and finishes the run.
    const rest = stasis(['restart', '--quiet', ckpt], { input: 'beta\ngamma\ndelta\n' });
    assert.equal(rest.code, 0, rest.stderr);
    assert.equal(run.out() + rest.stdout, ref.stdout);
  } finally {
    cleanup();
  }
});

test('launch refuses modules it cannot checkpoint, with one line and status 67', () => {
  const { dir, cleanup } = tempDir();
  try {
    // A valid WASI-shaped command with a start section (it would run again at every restart).
    const start = Buffer.from([
      0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
      0x01, 0x04, 0x01, 0x60, 0x00, 0x00, // type: () -> ()
      0x03, 0x03, 0x02, 0x00, 0x00, // two functions
      0x05, 0x03, 0x01, 0x00, 0x01, // memory, 1 page
      0x07, 0x13, 0x02, 0x06, ...Buffer.from('memory'), 0x02, 0x00, 0x06, ...Buffer.from('_start'), 0x00, 0x01,
      0x08, 0x01, 0x00, // start: function 0
      0x0a, 0x07, 0x02, 0x02, 0x00, 0x0b, 0x02, 0x00, 0x0b, // two empty bodies
    ]);
    const file = join(dir, 'start.wasm');
    writeFileSync(file, start);
    assert.equal(stasis(['run', file]).code, 0, 'a plain run accepts it');
    const before = readdirSync(dir).sort();
    const r = stasis(['launch', '--quiet', '--ckpt-dir', join(dir, 'ck'), file]);
    assert.equal(r.code, 67, r.stderr);
    assert.match(r.stderr, /^stasis: [^\n]*start[^\n]*\n$/);
    assert.deepEqual(readdirSync(dir).sort(), before);
  } finally {
    cleanup();
  }
});

test('launch caches the instrumented module; a damaged entry is rebuilt and a changed module re-instrumented, never run stale', () => {
  const { dir, cleanup } = tempDir();
  try {
    const env = { ...process.env, XDG_CACHE_HOME: join(dir, 'cache') };
    const cacheDir = join(dir, 'cache', 'stasis', 'modules');
    const prog = join(dir, 'prog.wasm'); // a copy: the test changes it in place later
    writeFileSync(prog, readFileSync(fixture('ckpt_compute')));
    const run = (): RunResult => stasis(['launch', '--quiet', '--ckpt-dir', join(dir, 'ck'), prog, '4', '400000'], { env });
    const ref = stasis(['run', fixture('ckpt_compute'), '4', '400000']);
    const first = run();
    assert.equal(first.code, ref.code, first.stderr);
    assert.equal(first.stdout, ref.stdout);
    const wasm = readdirSync(cacheDir).filter((f) => f.endsWith('.wasm'));
    assert.equal(wasm.length, 1, 'one cached module');
    const entry = join(cacheDir, wasm[0]!);
    const good = readFileSync(entry);
    const meta = JSON.parse(readFileSync(entry.replace(/\.wasm$/, '.json'), 'utf8')) as { hash: string };
    assert.equal(createHash('sha256').update(good).digest('hex'), meta.hash);
    // A hit: same output, entry untouched.
    const second = run();
    assert.equal(second.code, ref.code, second.stderr);
    assert.equal(second.stdout, ref.stdout);
    assert.deepEqual(readFileSync(entry), good);
    // Damage a byte of the cached module: the launch must notice, rebuild and run the real one.
    const bad = Buffer.from(good);
    bad[bad.length >> 1] ^= 0xff;
    writeFileSync(entry, bad);
    const third = run();
    assert.equal(third.code, ref.code, third.stderr);
    assert.equal(third.stdout, ref.stdout);
    assert.deepEqual(readFileSync(entry), good, 'the entry was rebuilt');
    // Replace the module in place (same path, same inode): the new program runs, not the cached one.
    writeFileSync(prog, readFileSync(fixture('ckpt_recursive')));
    const other = stasis(['run', fixture('ckpt_recursive'), '4', '400000']);
    const fourth = run();
    assert.equal(fourth.code, other.code, fourth.stderr);
    assert.equal(fourth.stdout, other.stdout);
    assert.notEqual(fourth.stdout, ref.stdout);
  } finally {
    cleanup();
  }
});

const hasScript = spawnSync('script', ['--version']).status === 0;

test('checkpoint and restart show a progress line on a terminal, and none otherwise', { skip: !hasScript && 'no script(1) for a pseudo-terminal' }, async () => {
  const { dir, cleanup } = tempDir();
  try {
    const args = [fixture('ckpt_compute'), '40', '25000000'];
    const ref = stasis(['run', ...args]);
    const ckpt = join(dir, 'ckpt');
    const name = `progress-${process.pid}`;
    const run = launchInBackground(['--ckpt-dir', ckpt, '--name', name, ...args]);
    await waitRunning(name, run.child);
    // The line normally waits a second; 0 shows it at once, so a fast machine cannot skip it.
    const env = { ...process.env, STASIS_PROGRESS_AFTER_MS: '0' };
    const plain = stasis(['checkpoint', name], { env });
    assert.equal(plain.code, 0, plain.stderr);
    assert.equal(plain.stderr, '', 'no progress line when stderr is not a terminal');
    const onTty = (cmd: string[], status: number | null): string => {
      const line = cmd.map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
      const r = spawnSync('script', ['-qec', line, '/dev/null'], { env, encoding: 'utf8', timeout: 60_000 });
      assert.equal(r.status, status, r.stdout);
      return r.stdout;
    };
    const cp = onTty([process.execPath, stasisBin, 'checkpoint', '--exit', name], 0);
    assert.match(cp, new RegExp(`stasis: checkpointing ${name} [^\\n]*done in \\d+\\.\\d s`));
    assert.equal(await run.exit, 75);
    const again = onTty([process.execPath, stasisBin, 'restart', '--quiet', ckpt], ref.code);
    assert.match(again, /stasis: restarting from [^\n]*gen-000002[^\n]*done in \d+\.\d s/);
    const resumed = again.replace(/\r/g, '').split('\n').filter((l) => l.startsWith('round '));
    assert.ok(resumed.length > 0 && ref.stdout.endsWith(resumed.join('\n') + '\n'), again);
  } finally {
    cleanup();
  }
});

test('stack re-entries (unwind and rewind without a capture) leave no trace; a checkpoint among them restarts right', async () => {
  const { dir, cleanup } = tempDir();
  try {
    // One before the program starts (its first safe point sees it however slow the machine, and
    // with the shallow recursion below there is room to serve it there), then every 3 ms for
    // 0.6 s, instead of the few of a normal run.
    const env = { ...process.env, STASIS_REENTER_MS: Array.from({ length: 201 }, (_, i) => 3 * i).join(',') };
    // Through the API, which reports how many re-entries the program went through.
    const script = join(dir, 'reenter.mjs');
    writeFileSync(script, `
      import { launch } from ${JSON.stringify(new URL('../src/api.js', import.meta.url).href)};
      import { writeFileSync } from 'node:fs';
      const [wasm, ckptDir, out, ...args] = process.argv.slice(2);
      const r = await launch({ module: wasm, args, env: [], preopens: [], ckptDir, quiet: true });
      writeFileSync(out, JSON.stringify(r));`);
    // Recursion shallow enough that the unwind buffer fits on the shadow stack at every safe point.
    for (const [name, args] of [['ckpt_compute', ['12', '25000000']], ['ckpt_recursive', ['60']]] as const) {
      const ref = stasis(['run', fixture(name), ...args]);
      const out = join(dir, `${name}.json`);
      const r = spawnSync(process.execPath, [script, fixture(name), join(dir, `${name}.ckpt`), out, ...args], { env, input: '', timeout: 60_000, maxBuffer: 256 * 1024 * 1024 });
      assert.equal(r.status, 0, `${r.signal} ${r.error} ${String(r.stderr)}`);
      assert.equal(String(r.stdout), ref.stdout, name);
      const result = JSON.parse(readFileSync(out, 'utf8')) as { exitCode: number; reentries?: number };
      assert.equal(result.exitCode, ref.code);
      assert.ok((result.reentries ?? 0) > 0, `${name}: re-entered ${result.reentries} times`);
    }
    // A checkpoint between re-entries, and a restart that re-enters too.
    const args = [fixture('ckpt_compute'), '12', '25000000'];
    const ref = stasis(['run', ...args]);
    const ckpt = join(dir, 'mixed.ckpt');
    const name = `reenter-${process.pid}`;
    const run = launchInBackground(['--ckpt-dir', ckpt, '--name', name, ...args], env);
    await waitRunning(name, run.child);
    await new Promise((r) => setTimeout(r, 300));
    const cp = stasis(['checkpoint', '--exit', name]);
    assert.equal(cp.code, 0, cp.stderr);
    assert.equal(await run.exit, CHECKPOINTED);
    const second = stasis(['restart', '--quiet', ckpt], { env });
    assert.equal(second.code, ref.code, second.stderr);
    assert.equal(run.out() + second.stdout, ref.stdout);
  } finally {
    cleanup();
  }
});
