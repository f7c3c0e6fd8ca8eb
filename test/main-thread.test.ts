// `stasis launch` and `restart` as the CLI runs them with the native addon: the program on the
// main thread from its first instant, supervised from a side thread that starts beside it
// (src/launcher/main-thread.ts); without the addon, in a worker. What a user meets is the same.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { nativeInline } from '../src/wasi/native.js';
import { fixture, stasis, stasisBin, tempDir } from './helpers.js';

/** The tests of the main-thread arrangement itself need it (the addon in use). */
const mainThread = { skip: nativeInline === null ? 'the native addon is not in use: the CLI runs the program in a worker' : false };

const MODES: [string, NodeJS.ProcessEnv][] = [
  ['main thread', process.env],
  ['worker, STASIS_NO_NATIVE=1', { ...process.env, STASIS_NO_NATIVE: '1' }],
];

/** A background `stasis ARGS...`: its output so far, a wait for some of it, its exit status. */
function background(args: string[], env: NodeJS.ProcessEnv, stdin: 'ignore' | 'pipe' = 'ignore') {
  const child = spawn(process.execPath, [stasisBin, ...args], { stdio: [stdin, 'pipe', 'pipe'], env });
  let out = '';
  let err = '';
  const waiters: (() => void)[] = [];
  const wake = (): void => { for (const w of waiters.splice(0)) w(); };
  child.stdout!.on('data', (d: Buffer) => { out += d.toString(); wake(); });
  child.stderr!.on('data', (d: Buffer) => { err += d.toString(); wake(); });
  const exit = new Promise<number | null>((resolve) => child.on('close', (code) => { resolve(code); wake(); }));
  /** Resolves once `seen()` holds (for stdout and stderr so far); rejects if the process ended first. */
  const until = async (what: string, seen: (out: string, err: string) => boolean): Promise<void> => {
    while (!seen(out, err)) {
      if (child.exitCode !== null) throw new Error(`exited (${child.exitCode}) before ${what}; stdout ${JSON.stringify(out)}, stderr ${JSON.stringify(err)}`);
      await new Promise<void>((resolve) => waiters.push(resolve));
    }
  };
  return { child, out: () => out, err: () => err, exit, until };
}

const images = (ckpt: string): string[] => (existsSync(join(ckpt, 'images')) ? readdirSync(join(ckpt, 'images')).filter((n) => n.startsWith('gen-')).sort() : []);

for (const [mode, env] of MODES) {
  test(`SIGTERM in a compute loop that never calls out: checkpoint, exit 75; the restart goes on from there and stops alike (${mode})`, mode === 'main thread' ? mainThread : {}, async () => {
    const { dir, cleanup } = tempDir();
    try {
      const ckpt = join(dir, 'ckpt');
      const name = `spin-${process.pid}-${mode.length}`;
      // Two lines, then a loop with no system call: only its instrumented polls can stop it.
      const first = background(['launch', '--quiet', '--ckpt-dir', ckpt, '--name', name, fixture('cli_spin'), '-', '2'], env);
      await first.until('its two lines', (out) => out === 'line 0\nline 1\n');
      first.child.kill('SIGTERM');
      assert.equal(await first.exit, 75, first.err());
      assert.deepEqual(images(ckpt), ['gen-000001']);
      assert.equal(first.out(), 'line 0\nline 1\n');

      const second = background(['restart', '--ckpt-dir', ckpt, ckpt], env);
      await second.until('it runs', (_, err) => err.includes(' running (pid '));
      second.child.kill('SIGTERM');
      assert.equal(await second.exit, 75, second.err());
      assert.match(second.err(), /checkpointed to .*gen-000002 on SIGTERM/);
      assert.deepEqual(images(ckpt), ['gen-000001', 'gen-000002']);
      assert.equal(second.out(), ''); // it went on spinning where it was: no line written again
    } finally {
      cleanup();
    }
  });
}

test('a SIGTERM that comes before the side thread supervises is kept: checkpoint, exit 75, restart matches an uninterrupted run', mainThread, async () => {
  const { dir, cleanup } = tempDir();
  try {
    const args = [fixture('ckpt_compute'), '12', '25000000'];
    const ref = stasis(['run', ...args]);
    const ckpt = join(dir, 'ckpt');
    const go = join(dir, 'go');
    // The side thread waits (testing aid) while the program runs and writes on the main thread.
    const run = background(['launch', '--quiet', '--ckpt-dir', ckpt, ...args], { ...process.env, STASIS_TEST_PAUSE: 'side', STASIS_TEST_CONTINUE: go });
    await run.until('the side thread waits and the program runs', (out, err) => err.includes('paused at side') && out.includes('round 0 '));
    run.child.kill('SIGTERM');
    writeFileSync(go, '');
    assert.equal(await run.exit, 75, run.err());
    const restarted = stasis(['restart', '--quiet', ckpt]);
    assert.equal(restarted.code, ref.code, restarted.stderr);
    assert.equal(run.out() + restarted.stdout, ref.stdout);
  } finally {
    cleanup();
  }
});

test('`stasis checkpoint` works from the program\'s first output on, before the side thread supervises; the program waiting for input is checkpointed there', mainThread, async () => {
  const { dir, cleanup } = tempDir();
  try {
    const lines = ['alpha\n', 'beta\n', 'gamma\n'];
    const ref = stasis(['run', fixture('ckpt_stdin')], { input: lines.join('') });
    const ckpt = join(dir, 'ckpt');
    const go = join(dir, 'go');
    const name = `early-${process.pid}`;
    const run = background(['launch', '--quiet', '--ckpt-dir', ckpt, '--name', name, fixture('ckpt_stdin')],
      { ...process.env, STASIS_TEST_PAUSE: 'side', STASIS_TEST_CONTINUE: go }, 'pipe');
    run.child.stdin!.write(lines[0]);
    await run.until('its first answer, the side thread waiting', (out, err) => err.includes('paused at side') && out === '1: ALPHA\n');
    // Registered and listening already: the request waits for the side thread, then is served.
    const checkpoint = background(['checkpoint', name], process.env);
    writeFileSync(go, '');
    assert.equal(await checkpoint.exit, 0, checkpoint.err());
    assert.match(checkpoint.out(), /gen-000001\n$/);
    run.child.stdin!.end(lines[1]! + lines[2]!);
    assert.equal(await run.exit, ref.code, run.err());
    assert.equal(run.out(), ref.stdout);
    // The image holds the program as it waited for its second line.
    const restarted = stasis(['restart', '--quiet', join(ckpt, 'images', 'gen-000001')], { input: lines[1]! + lines[2]! });
    assert.equal(restarted.code, ref.code, restarted.stderr);
    assert.equal('1: ALPHA\n' + restarted.stdout, ref.stdout);
  } finally {
    cleanup();
  }
});
