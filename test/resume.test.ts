// `stasis launch --resume`: the one command of a job script that is run again and again. Each
// attempt continues from the newest image when there is one; the outputs of all attempts,
// concatenated, and the program's files are byte-identical to one uninterrupted run.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fixture, stasis, stasisBin, tempDir } from './helpers.js';

const CHECKPOINTED = 75;
const MISMATCH = 79;

/** Every file under `dir` with the sha256 of its contents: a tree compared before and after. */
function tree(dir: string): Record<string, string> {
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

test('launch --resume: launches without an image, then each attempt continues from the newest; output and files as one run', () => {
  const { dir, cleanup } = tempDir();
  try {
    const refWork = join(dir, 'ref');
    const work = join(dir, 'work');
    mkdirSync(refWork);
    mkdirSync(work);
    const ref = stasis(['run', '--dir', `${refWork}::/work`, fixture('ckpt_fds'), '/work']);
    assert.equal(ref.code, 0, ref.stderr);
    const ckpt = join(dir, 'ckpt');
    // Every attempt stops itself at its 60th WASI call, as a time limit would stop a job.
    const attempt = (): ReturnType<typeof stasis> => stasis(['launch', '--resume', '--ckpt-dir', ckpt, '--checkpoint-at-call', '60',
      '--dir', `${work}::/work`, fixture('ckpt_fds'), '/work']);
    let out = '';
    let attempts = 0;
    for (;;) {
      const r = attempt();
      attempts++;
      out += r.stdout;
      if (attempts === 1) assert.doesNotMatch(r.stderr, /resuming/);
      else assert.match(r.stderr, /^stasis: resuming ckpt_fds from .*gen-\d+$/m);
      if (r.code !== CHECKPOINTED) {
        assert.equal(r.code, ref.code, r.stderr);
        break;
      }
      assert.ok(attempts < 100, 'the program ends');
    }
    assert.ok(attempts >= 3, `resumed more than once (${attempts} attempts)`);
    assert.equal(out, ref.stdout);
    assert.deepEqual(tree(work), tree(refWork));
  } finally {
    cleanup();
  }
});

test('launch --resume refuses another program\'s or another run\'s image, and a damaged newest image, with one line and nothing changed', () => {
  const { dir, cleanup } = tempDir();
  try {
    const work = join(dir, 'work');
    const other = join(dir, 'other');
    mkdirSync(work);
    mkdirSync(other);
    const ckpt = join(dir, 'ckpt');
    const base = ['--ckpt-dir', ckpt, '--env', 'MODE=a'];
    const first = stasis(['launch', '--quiet', '--resume', ...base, '--checkpoint-at-call', '30', '--dir', `${work}::/work`, fixture('ckpt_fds'), '/work']);
    assert.equal(first.code, CHECKPOINTED, first.stderr);
    const before = { ckpt: tree(ckpt), work: tree(work) };
    const cases: [string, string[], RegExp][] = [
      ['another module', [...base, '--dir', `${work}::/work`, fixture('ckpt_compute'), '/work'], /another program/],
      ['other arguments', [...base, '--dir', `${work}::/work`, fixture('ckpt_fds'), '/work', 'x'], /other arguments/],
      ['another directory', [...base, '--dir', `${other}::/work`, fixture('ckpt_fds'), '/work'], /other directories/],
      ['a missing directory', [...base, fixture('ckpt_fds'), '/work'], /other directories/],
      ['another variable value', ['--ckpt-dir', ckpt, '--env', 'MODE=b', '--dir', `${work}::/work`, fixture('ckpt_fds'), '/work'], /environment variables \(differing: MODE\)/],
      ['a missing variable', ['--ckpt-dir', ckpt, '--dir', `${work}::/work`, fixture('ckpt_fds'), '/work'], /differing: MODE/],
      ['other file options', [...base, '--checkpoint-open-files', '--dir', `${work}::/work`, fixture('ckpt_fds'), '/work'], /other file options/],
    ];
    for (const [what, args, message] of cases) {
      const r = stasis(['launch', '--resume', ...args]);
      assert.equal(r.code, MISMATCH, `${what}: ${r.stderr}`);
      assert.match(r.stderr, /^stasis: --resume: [^\n]+\n$/, what);
      assert.match(r.stderr, message, what);
      assert.equal(r.stdout, '', what);
      assert.deepEqual({ ckpt: tree(ckpt), work: tree(work) }, before, what);
    }
    // With --inherit-env only the variables named on the command line are compared.
    const inherited = join(dir, 'inherited');
    cpSync(ckpt, inherited, { recursive: true });
    const inh = stasis(['launch', '--quiet', '--resume', '--ckpt-dir', inherited, '--inherit-env', '--env', 'MODE=b', '--dir', `${work}::/work`, fixture('ckpt_fds'), '/work']);
    assert.equal(inh.code, MISMATCH, inh.stderr);

    // The newest image damaged (its manifest, or a memory chunk): refused as damaged (73), not
    // run from an older image or from scratch, and nothing changed.
    const second = stasis(['launch', '--quiet', '--resume', ...base, '--checkpoint-at-call', '30', '--dir', `${work}::/work`, fixture('ckpt_fds'), '/work']);
    assert.equal(second.code, CHECKPOINTED, second.stderr);
    const images = readdirSync(join(ckpt, 'images')).filter((n) => n.startsWith('gen-')).sort();
    assert.equal(images.length, 2);
    const manifest = join(ckpt, 'images', images[1]!, 'manifest.json');
    writeFileSync(manifest, readFileSync(manifest, 'utf8').replace('"args"', '"argz"'));
    const damagedBefore = { ckpt: tree(ckpt), work: tree(work) };
    const damaged = stasis(['launch', '--resume', ...base, '--dir', `${work}::/work`, fixture('ckpt_fds'), '/work']);
    assert.equal(damaged.code, 73, damaged.stderr);
    assert.match(damaged.stderr, /^stasis: --resume: the newest image [^\n]*gen-000002[^\n]*restart an older one[^\n]*gen-000001[^\n]*\n$/);
    assert.equal(damaged.stdout, '');
    assert.deepEqual({ ckpt: tree(ckpt), work: tree(work) }, damagedBefore);

    const only = join(dir, 'only');
    const one = stasis(['launch', '--quiet', '--resume', '--ckpt-dir', only, '--checkpoint-at-call', '3', fixture('ckpt_sleep'), '3', '10']);
    assert.equal(one.code, CHECKPOINTED, one.stderr);
    const chunks = join(only, 'chunks');
    const chunk = join(chunks, readdirSync(chunks).sort((a, b) => statSync(join(chunks, b)).size - statSync(join(chunks, a)).size)[0]!);
    const bytes = readFileSync(chunk);
    bytes[bytes.length >> 1] ^= 0xff;
    writeFileSync(chunk, bytes);
    const onlyBefore = tree(only);
    const bad = stasis(['launch', '--resume', '--ckpt-dir', only, fixture('ckpt_sleep'), '3', '10']);
    assert.equal(bad.code, 73, bad.stderr);
    assert.equal(bad.stdout, '');
    assert.deepEqual(tree(only), onlyBefore);

    // With --inherit-env, variables not named on the command line (a scheduler's, which change
    // from one attempt to the next) are not compared.
    const ref = stasis(['run', fixture('ckpt_sleep'), '3', '10']);
    const jobs = join(dir, 'jobs');
    const cmd = ['launch', '--quiet', '--resume', '--ckpt-dir', jobs, '--inherit-env', '--env', 'MODE=a'];
    const a = stasis([...cmd, '--checkpoint-at-call', '3', fixture('ckpt_sleep'), '3', '10'], { env: { ...process.env, ATTEMPT: '1' } });
    assert.equal(a.code, CHECKPOINTED, a.stderr);
    const b = stasis([...cmd, fixture('ckpt_sleep'), '3', '10'], { env: { ...process.env, ATTEMPT: '2' } });
    assert.equal(b.code, ref.code, b.stderr);
    assert.equal(a.stdout + b.stdout, ref.stdout);
  } finally {
    cleanup();
  }
});

test('launch --resume in a directory with no complete image (only a dead writer\'s leftovers) launches', () => {
  const { dir, cleanup } = tempDir();
  try {
    const ckpt = join(dir, 'ckpt');
    mkdirSync(join(ckpt, 'images', '.tmp-gen-000001-123-abc'), { recursive: true });
    const ref = stasis(['run', fixture('ckpt_sleep'), '3', '10']);
    const r = stasis(['launch', '--quiet', '--resume', '--ckpt-dir', ckpt, fixture('ckpt_sleep'), '3', '10']);
    assert.equal(r.code, ref.code, r.stderr);
    assert.equal(r.stdout, ref.stdout);
  } finally {
    cleanup();
  }
});

/** Starts `stasis ARGS...` and resolves once its stderr has a line matching `line`. */
function startUntil(args: string[], line: RegExp, env: NodeJS.ProcessEnv): Promise<{ child: ChildProcess; exit: Promise<number | null>; stdout: () => string; stderr: () => string }> {
  const child = spawn(process.execPath, [stasisBin, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  const exit = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    child.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
      if (line.test(err)) resolve({ child, exit, stdout: () => out, stderr: () => err });
    });
    void exit.then((code) => reject(new Error(`exited ${code} before printing ${line}: ${err}`)));
  });
}

test('SIGTERM before the launcher\'s modules have loaded: exit 75 (not 143), nothing written', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const ckpt = join(dir, 'ckpt');
    for (const cmd of [['launch', '--resume', '--ckpt-dir', ckpt, fixture('ckpt_compute'), '3', '200000'], ['restart', ckpt]]) {
      const p = await startUntil(cmd, /paused at load/, { ...process.env, STASIS_TEST_PAUSE: 'load' });
      p.child.kill('SIGTERM');
      assert.equal(await p.exit, CHECKPOINTED, p.stderr());
      assert.equal(p.stdout(), '');
      assert.equal(existsSync(ckpt), false);
    }
  } finally {
    cleanup();
  }
});

test('SIGTERM while a first launch instruments the module: exit 75, nothing written; --resume then runs it as one run', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const ckpt = join(dir, 'ckpt');
    const args = [fixture('ckpt_compute'), '3', '200000'];
    const ref = stasis(['run', ...args]);
    assert.ok(ref.stdout.length > 0, ref.stderr);
    // A cache of its own: the module is instrumented, not found.
    const env = { ...process.env, XDG_CACHE_HOME: join(dir, 'cache') };
    const first = await startUntil(['launch', '--resume', '--ckpt-dir', ckpt, ...args], /paused at instrument/, { ...env, STASIS_TEST_PAUSE: 'instrument' });
    first.child.kill('SIGTERM');
    assert.equal(await first.exit, CHECKPOINTED, first.stderr());
    assert.equal(first.stdout(), '');
    assert.deepEqual(tree(join(ckpt, 'images')), {});
    const again = stasis(['launch', '--quiet', '--resume', '--ckpt-dir', ckpt, ...args], { env });
    assert.equal(again.code, ref.code, again.stderr);
    assert.equal(again.stdout, ref.stdout);
  } finally {
    cleanup();
  }
});

test('SIGTERM or SIGINT in a restart before its program runs: exit 75 (130), the image and files untouched; --resume then finishes the run', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const refWork = join(dir, 'ref');
    const work = join(dir, 'work');
    mkdirSync(refWork);
    mkdirSync(work);
    const ref = stasis(['run', '--dir', `${refWork}::/work`, fixture('ckpt_fds'), '/work']);
    const ckpt = join(dir, 'ckpt');
    const cmd = ['launch', '--resume', '--ckpt-dir', ckpt, '--dir', `${work}::/work`, fixture('ckpt_fds'), '/work'];
    const first = stasis([...cmd.slice(0, 1), '--checkpoint-at-call', '100', ...cmd.slice(1)]);
    assert.equal(first.code, CHECKPOINTED, first.stderr);
    const before = { ckpt: tree(ckpt), work: tree(work) };
    const paused = { ...process.env, STASIS_TEST_PAUSE: 'restart' };
    for (const [sig, status] of [['SIGTERM', CHECKPOINTED], ['SIGINT', 130]] as const) {
      for (const args of [cmd, ['restart', ckpt]]) {
        const r = await startUntil(args, /paused at restart/, paused);
        r.child.kill(sig);
        assert.equal(await r.exit, status, `${args[0]} ${sig}: ${r.stderr()}`);
        assert.equal(r.stdout(), '');
        assert.deepEqual({ ckpt: tree(ckpt), work: tree(work) }, before, `${args[0]} ${sig}`);
      }
    }
    const rest = stasis(cmd);
    assert.equal(rest.code, ref.code, rest.stderr);
    assert.equal(first.stdout + rest.stdout, ref.stdout);
    assert.deepEqual(tree(work), tree(refWork));
  } finally {
    cleanup();
  }
});
