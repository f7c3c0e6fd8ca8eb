// `stasis run` as a user drives it: exit codes, stdio, traps, bad input, signals.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fixture, repoRoot, stasis, stasisBin, tempDir } from './helpers.js';

/** A minimal wasm binary: header plus the given sections. */
function wasm(...sections: number[][]): Buffer {
  return Buffer.from([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, ...sections.flat()]);
}
const typeSection = [0x01, 0x04, 0x01, 0x60, 0x00, 0x00]; // one type: () -> ()
const importEnvFoo = [0x02, 0x0b, 0x01, 0x03, 0x65, 0x6e, 0x76, 0x03, 0x66, 0x6f, 0x6f, 0x00, 0x00]; // env.foo

/** Lists a directory tree, to check that a failed command changed nothing. */
function snapshot(dir: string): string[] {
  return readdirSync(dir, { recursive: true }).map(String).sort();
}

test('program output, arguments and exit status pass through', () => {
  const r = stasis(['run', fixture('cli_trap'), 'x', 'y'].slice(0, 2));
  // cli_trap with argc == 1 still traps (explode(1)); covered below. Here: stdin→stdout.
  assert.equal(r.stdout, 'before trap\n');
  const data = Buffer.from('hello, stasis\n'.repeat(1000));
  const cat = stasis(['run', fixture('cli_cat')], { input: data });
  assert.equal(cat.code, 0);
  assert.deepEqual(cat.stdoutBytes, data);
  assert.equal(cat.stderr, `cat: ${data.length} bytes\n`);
});

test('a trap prints one line naming the function and exits 134', () => {
  const r = stasis(['run', fixture('cli_trap')]);
  assert.equal(r.code, 134);
  assert.equal(r.stdout, 'before trap\n');
  assert.match(r.stderr, /^stasis: trap: unreachable.* in function 'explode' \(.*cli_trap\.wasm\)\n$/);
});

// `run` runs its program on the main thread with the native addon, in a worker without it:
// what the program meets (stdin, signals, its writes) is the same either way.
const MODES: [string, NodeJS.ProcessEnv][] = [
  ['main thread', process.env],
  ['worker, STASIS_NO_NATIVE=1', { ...process.env, STASIS_NO_NATIVE: '1' }],
];

/** The first `lines` lines a child writes on stdout, once they have come. */
function firstLines(child: ReturnType<typeof spawn>, lines: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.split('\n').length > lines) resolve(out);
    });
    child.on('exit', () => reject(new Error(`exited after writing ${JSON.stringify(out)}`)));
  });
}

for (const [mode, env] of MODES) {
  test(`poll_oneoff on stdin: times out on an idle pipe, wakes on data and on EOF (${mode})`, async () => {
    // An idle pipe that stays open: the 200 ms clock must fire first.
    const child = spawn(process.execPath, [stasisBin, 'run', fixture('cli_poll_stdin')], { stdio: ['pipe', 'pipe', 'pipe'], env });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    child.stdin.end();
    assert.equal(code, 0);
    assert.equal(out, 'timeout\n');
    assert.equal(stasis(['run', fixture('cli_poll_stdin')], { input: 'abc\n', env }).stdout, 'ready abc\n');
    assert.equal(stasis(['run', fixture('cli_poll_stdin')], { input: '', env }).stdout, 'ready eof\n');
  });

  test(`poll_oneoff on stdin: input that comes while it waits wakes it (${mode})`, async () => {
    // A one-hour timeout: only the input can end the wait.
    const child = spawn(process.execPath, [stasisBin, 'run', fixture('cli_poll_stdin'), '3600'], { stdio: ['pipe', 'pipe', 'pipe'], env });
    const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
    const seen = firstLines(child, 1);
    assert.equal(await seen, 'waiting\n');
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stdin.end('late\n');
    assert.equal(await exited, 0);
    assert.equal(out, 'ready late\n');
  });

  test(`stdin through a pipe, read to its end (${mode})`, () => {
    const data = Buffer.from('hello, stasis\n'.repeat(20000));
    const cat = stasis(['run', fixture('cli_cat')], { input: data, env });
    assert.equal(cat.code, 0);
    assert.deepEqual(cat.stdoutBytes, data);
    assert.equal(cat.stderr, `cat: ${data.length} bytes\n`);
  });

  test(`SIGINT in a compute loop: what the program printed is out, exit 130 (${mode})`, async () => {
    const child = spawn(process.execPath, [stasisBin, 'run', fixture('cli_spin'), '-', '2'], { stdio: ['ignore', 'pipe', 'pipe'], env });
    const exited = new Promise<[number | null, string | null]>((resolve) => child.on('exit', (c, s) => resolve([c, s])));
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    assert.equal(await firstLines(child, 2), 'line 0\nline 1\n');
    child.kill('SIGINT');
    assert.deepEqual(await exited, [130, null]);
    assert.equal(err, '');
  });

  test(`coalesced writes reach the file while the program computes, and survive SIGINT (${mode})`, { timeout: 300_000 }, async () => {
    const { dir, cleanup } = tempDir();
    try {
      const child = spawn(process.execPath, [stasisBin, 'run', '--dir', `${dir}::/out`, fixture('cli_spin'), '/out/log.txt', '3'], { stdio: 'ignore', env });
      const expected = 'line 0\nline 1\nline 2\n';
      // The program never makes another syscall: the data must still show up on its own (if it
      // never does, the test's timeout ends it).
      for (;;) {
        let seen = '';
        try {
          seen = readFileSync(join(dir, 'log.txt'), 'utf8');
        } catch { /* not created yet */ }
        if (seen === expected) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      child.kill('SIGINT');
      const [code, signal] = await new Promise<[number | null, string | null]>((resolve) => child.on('exit', (c, s) => resolve([c, s])));
      assert.equal(signal, null);
      assert.equal(code, 130);
      assert.equal(readFileSync(join(dir, 'log.txt'), 'utf8'), expected);
    } finally {
      cleanup();
    }
  });

  test(`SIGTERM while writing: every byte written before it is on disk (${mode})`, { timeout: 300_000 }, async () => {
    const { dir, cleanup } = tempDir();
    try {
      const lines = 20000;
      const child = spawn(process.execPath, [stasisBin, 'run', '--dir', `${dir}::/out`, fixture('cli_spin'), '/out/log.txt', String(lines)], { stdio: 'ignore', env });
      const expected = Array.from({ length: lines }, (_, i) => `line ${i}\n`).join('');
      // Until the program has written everything (then it spins): whatever the machine's speed.
      for (;;) {
        let size = 0;
        try {
          size = readFileSync(join(dir, 'log.txt')).length;
        } catch { /* not yet */ }
        if (size === expected.length) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      child.kill('SIGTERM');
      const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
      assert.equal(code, 143);
      assert.equal(readFileSync(join(dir, 'log.txt'), 'utf8'), expected);
    } finally {
      cleanup();
    }
  });
}

test('bad input: one-line error, distinct exit code, nothing written', () => {
  const { dir, cleanup } = tempDir();
  try {
    writeFileSync(join(dir, 'notwasm.wasm'), 'this is text, not wasm\n');
    writeFileSync(join(dir, 'empty-module.wasm'), wasm());
    writeFileSync(join(dir, 'imports-env.wasm'), wasm(typeSection, importEnvFoo));
    writeFileSync(join(dir, 'truncated.wasm'), wasm([0x01, 0x10, 0x01]));
    mkdirSync(join(dir, 'box'));
    // Files that are not regular files: reading one would hang (a FIFO) or never end (a device).
    const fifo = join(dir, 'fifo');
    assert.equal(spawnSync('mkfifo', [fifo]).status, 0);
    writeFileSync(join(dir, 'plain-file'), 'x');
    const before = snapshot(dir);
    const cases: [string[], number, RegExp][] = [
      [['run', '--bogus', fixture('cli_cat')], 64, /unknown option --bogus/],
      [['run'], 64, /missing PROG\.wasm/],
      [['frobnicate'], 64, /unknown command 'frobnicate'/],
      [['run', '--env', 'NOEQUALS', fixture('cli_cat')], 64, /expected KEY=VALUE/],
      [['run', '--dir'], 64, /--dir needs a value/],
      [['run', '--compile', 'fast', fixture('cli_cat')], 64, /--compile fast: expected optimized or tiered/],
      [['launch', '--compile=', fixture('cli_cat')], 64, /launch: --compile : expected optimized or tiered/],
      [['restart', '--compile', 'O3', join(dir, 'box')], 64, /restart: --compile O3: expected optimized or tiered/],
      [['run', join(dir, 'missing.wasm')], 66, /cannot read module .*missing\.wasm: no such file/],
      [['run', join(dir, 'notwasm.wasm')], 65, /not a WebAssembly module \(no \\0asm header\)/],
      [['run', join(dir, 'truncated.wasm')], 65, /not a valid WebAssembly module/],
      [['run', join(dir, 'empty-module.wasm')], 67, /no _start export/],
      [['run', join(dir, 'imports-env.wasm')], 67, /imports function env\.foo, which Stasis does not provide/],
      [['run', '--dir', join(dir, 'nope'), fixture('cli_cat')], 68, /--dir .*nope: no such directory/],
      [['run', '--dir', join(dir, 'notwasm.wasm'), fixture('cli_cat')], 68, /not a directory/],
      [['run', fifo], 66, /cannot read module .*fifo: it is a FIFO, not a regular file/],
      [['run', '/dev/zero'], 66, /cannot read module \/dev\/zero: it is a device, not a regular file/],
      [['run', join(dir, 'box')], 66, /cannot read module .*box: it is a directory/],
      [['launch', '--file-rules', fifo, fixture('cli_cat')], 78, /cannot read rules file \(it is a FIFO, not a regular file\)/],
      [['launch', '--plugin', '/dev/zero', fixture('cli_cat')], 78, /--plugin \/dev\/zero: cannot load \/dev\/zero: it is a device, not a regular file/],
      [['launch', '--ckpt-dir', join(dir, 'plain-file'), fixture('cli_cat')], 64, /--ckpt-dir .*plain-file is a file; give a directory/],
      [['launch', '--ckpt-dir', fifo, fixture('cli_cat')], 64, /--ckpt-dir .*fifo is a FIFO; give a directory/],
      [['launch', '--ckpt-dir', '/dev/null', fixture('cli_cat')], 64, /--ckpt-dir \/dev\/null: \/dev\/null is a device/],
    ];
    for (const [args, code, message] of cases) {
      const r = stasis(args, { input: '' });
      assert.equal(r.code, code, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, message);
      assert.match(r.stderr, /^stasis: [^\n]+\n$/, 'exactly one line');
      assert.equal(r.stdout, '');
    }
    assert.deepEqual(snapshot(dir), before);
  } finally {
    cleanup();
  }
});

test('--compile: optimized skips V8\'s baseline compiler, tiered uses it; same output either way', () => {
  // What useCompileMode does, seen through V8's own test hook (a function's code tier).
  const tiny = [0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 127, 3, 2, 1, 0, 7, 5, 1, 1, 102, 0, 0, 10, 6, 1, 4, 0, 65, 7, 11]; // (func (export "f") (result i32) i32.const 7)
  const tierAfter = (mode: string): string => {
    const script = `import { useCompileMode } from ${JSON.stringify(join(repoRoot, 'dist', 'src', 'launcher', 'compile.js'))};
      useCompileMode(${JSON.stringify(mode)});
      const f = new WebAssembly.Instance(new WebAssembly.Module(new Uint8Array(${JSON.stringify(tiny)}))).exports.f;
      f();
      process.stdout.write(%IsLiftoffFunction(f) ? 'baseline' : 'optimized');`;
    const r = spawnSync(process.execPath, ['--allow-natives-syntax', '--input-type=module', '-e', script], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    return r.stdout;
  };
  assert.equal(tierAfter('optimized'), 'optimized');
  assert.equal(tierAfter('tiered'), 'baseline');
  const data = Buffer.from('same bytes either way\n'.repeat(100));
  for (const mode of ['optimized', 'tiered']) {
    const r = stasis(['run', '--compile', mode, fixture('cli_cat')], { input: data });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.stdoutBytes, data);
  }
});

test('--help and --version', () => {
  const help = stasis(['run', '--help']);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /--dir HOST\[::GUEST\]/);
  const v = stasis(['--version']);
  assert.equal(v.code, 0);
  assert.match(v.stdout, /^stasis \d+\.\d+\.\d+\n$/);
});

test('the runtime directory of control sockets: a link, a shared or another user\'s directory is refused (77), nothing written through it', () => {
  const { dir, cleanup } = tempDir();
  try {
    const uid = process.getuid!();
    const xdg = join(dir, 'xdg');
    const runtime = join(xdg, `stasis-${uid}`);
    const elsewhere = join(dir, 'elsewhere');
    mkdirSync(elsewhere, { mode: 0o700 });
    const env = { ...process.env, XDG_RUNTIME_DIR: xdg };
    const refused = (what: RegExp): void => {
      const r = stasis(['status'], { env });
      assert.equal(r.code, 77, r.stderr);
      assert.match(r.stderr, /^stasis: runtime directory [^\n]+\n$/);
      assert.match(r.stderr, what);
      assert.match(r.stderr, /set XDG_RUNTIME_DIR/, 'names a way out');
    };
    // Missing: made, private.
    assert.equal(stasis(['status', '--json'], { env }).code, 0);
    assert.equal(statSync(runtime).mode & 0o777, 0o700);
    // A link to another directory (even a private one of this user's) is not followed.
    rmSync(runtime, { recursive: true, force: true });
    symlinkSync(elsewhere, runtime);
    refused(/is a symbolic link/);
    assert.deepEqual(readdirSync(elsewhere), []);
    rmSync(runtime, { recursive: true, force: true });
    symlinkSync(join(dir, 'nowhere'), runtime);
    refused(/is a symbolic link/);
    rmSync(runtime, { recursive: true, force: true });
    mkdirSync(runtime);
    chmodSync(runtime, 0o755);
    refused(/has mode 0755, not 0700/);
    if (uid === 0) {
      chmodSync(runtime, 0o700);
      chownSync(runtime, 65534, 65534);
      refused(/belongs to uid 65534, not to you \(uid 0\)/);
    }
  } finally {
    cleanup();
  }
});
