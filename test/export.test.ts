// `stasis export` and restarts from the export file, end to end: a program with open files is
// checkpointed, its image exported to one file, and restarted in a new process from that file
// alone, with its files in another directory; output and files byte-identical to an
// uninterrupted run. Damaged, truncated, foreign, empty and FIFO "exports" are refused with
// one line and their status, and change nothing on disk.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import {
  appendFileSync, cpSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, truncateSync, writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { fixture, stasis, stasisBin, tempDir } from './helpers.js';
import { tarHeader } from '../src/image/export.js';

const PROG = fixture('files_ops');
const FILES = { 'db.bin': '0123456789', 'app.log': 'start\n', 'ro.txt': 'abcdefgh' };
// A database (saved in the image), a log (cut back at restart) and a read-only file; two
// pauses (a checkpoint at each).
const OPS = ['open:0:/data/db.bin:rw', 'seek:0:2', 'write:0:AB', 'open:1:/data/app.log:a', 'write:1:one\\n',
  'open:2:/data/ro.txt:r', 'read:2:3', 'pause', 'write:0:cd', 'write:1:two\\n', 'read:2:3', 'pause', 'write:0:ef', 'dump:0'];

function put(dir: string, files: Record<string, string>): void {
  mkdirSync(dir, { recursive: true });
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
}

/** Every file and directory under `dir` with its contents ('/' for a directory). */
function tree(dir: string, prefix = ''): Map<string, string> {
  const out = new Map<string, string>();
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) {
      out.set(prefix + e.name, '/');
      for (const [k, v] of tree(p, `${prefix}${e.name}/`)) out.set(k, v);
    } else if (e.isFIFO()) out.set(prefix + e.name, 'fifo');
    else out.set(prefix + e.name, readFileSync(p).toString('base64'));
  }
  return out;
}

/** The program run to the end in one process: its output and its files. */
function reference(): { out: string; files: Map<string, string> } {
  const { dir, cleanup } = tempDir();
  try {
    put(join(dir, 'data'), FILES);
    const r = stasis(['run', '--dir', `${join(dir, 'data')}::/data`, PROG, ...OPS], { input: 'go\ngo\n' });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    return { out: r.stdout, files: tree(join(dir, 'data')) };
  } finally {
    cleanup();
  }
}

/** Runs `stasis ARGS` (a launch or restart of the program NAME) until it pauses, checkpoints
 *  it there and stops it; its output. `input` goes to its stdin first. */
async function checkpointAtPause(root: string, name: string, args: string[], input = ''): Promise<string> {
  const child = spawn(process.execPath, [stasisBin, ...args], { cwd: root, stdio: ['pipe', 'pipe', 'pipe'] });
  child.stdin.write(input);
  let out = '';
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exit = new Promise<number | null>((resolve) => child.on('close', resolve));
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('paused\n')) resolve();
    });
    child.on('exit', () => reject(new Error(`${args[0]} ended before pausing: ${out}${err}`)));
  });
  const cp = stasis(['checkpoint', '--exit', name]);
  assert.equal(cp.code, 0, cp.stderr + err);
  assert.equal(await exit, 75, err);
  return out;
}

const newName = (): string => `export-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;

/** A checkpointed program's image exported to ROOT/x.tar; returns the output before the checkpoint. */
async function exported(root: string, extra: string[] = []): Promise<{ before: string; file: string }> {
  const data = join(root, 'data');
  put(data, FILES);
  const name = newName();
  const before = await checkpointAtPause(root, name, ['launch', '--quiet', '--name', name, '--ckpt-dir', join(root, 'ckpt'),
    '--dir', `${data}::/data`, ...extra, PROG, ...OPS]);
  const r = stasis(['export', join(root, 'ckpt'), '-o', join(root, 'x.tar')], { cwd: root });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, `${join(root, 'x.tar')}\n`);
  return { before, file: join(root, 'x.tar') };
}

test('export: the image restarts from the file alone, in a new process, with its files moved elsewhere (--dir), and checkpoints into --ckpt-dir; output and files as an uninterrupted run', async () => {
  const ref = reference();
  const { dir: root, cleanup } = tempDir();
  try {
    const { before, file } = await exported(root);
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.deepEqual(readdirSync(root).filter((n) => n.startsWith('.')), [], 'a temporary file left beside the export');
    // The program's files go to another directory, the checkpoint directory goes away; the
    // database is missing there (it comes back from its copy in the export), the log grew.
    const moved = join(root, 'elsewhere');
    cpSync(join(root, 'data'), moved, { recursive: true });
    rmSync(join(root, 'data'), { recursive: true });
    rmSync(join(root, 'ckpt'), { recursive: true });
    rmSync(join(moved, 'db.bin'));
    appendFileSync(join(moved, 'app.log'), 'stray\n');
    // Restarted from the file, it runs to its second pause, is checkpointed there (into
    // --ckpt-dir) and stopped; that image restarts in turn.
    const name = newName();
    const middle = await checkpointAtPause(root, name, ['restart', file, '--name', name, '--dir', `${moved}::/data`,
      '--ckpt-dir', join(root, 'new')], 'go\n');
    assert.deepEqual(readdirSync(join(root, 'new', 'images')), ['gen-000001']);
    const info = JSON.parse(stasis(['inspect', '--json', join(root, 'new')]).stdout) as { complete: boolean; files: { copy?: string }[] };
    assert.ok(info.complete && info.files.some((f) => f.copy !== undefined), JSON.stringify(info));
    // (An image keeps the program's own host paths: each restart remaps them.)
    const r = stasis(['restart', '--quiet', '--dir', `${moved}::/data`, join(root, 'new')], { input: 'go\n', cwd: root });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(before + middle + r.stdout, ref.out);
    assert.deepEqual(tree(moved), ref.files);
    // The cut tail of the log is kept where the restart's checkpoints go.
    assert.equal(readFileSync(join(root, 'new', 'kept', readdirSync(join(root, 'new', 'kept'))[0]!, '1-app.log.tail'), 'utf8'), 'stray\n');
    assert.deepEqual(readdirSync(root).sort(), ['elsewhere', 'new', 'x.tar']);
  } finally {
    cleanup();
  }
});

test('export: without --ckpt-dir a restart from the file checkpoints into ./NAME.ckpt (said on stderr); compressed chunks; inspect reads the file; it is a tar archive of a checkpoint directory; -o - writes the same bytes', async () => {
  const ref = reference();
  const { dir: root, cleanup } = tempDir();
  try {
    const { before, file } = await exported(root, ['--compress', 'deflate']);
    const listing = spawnSync('tar', ['-tf', file], { encoding: 'utf8' });
    if (listing.error === undefined) assert.match(listing.stdout, /^chunks\/xxh64-[0-9a-f]{16}\.deflate$/m);
    // inspect: what it says of the directory's image.
    const fromFile = JSON.parse(stasis(['inspect', '--json', file]).stdout) as Record<string, unknown>;
    const fromDir = JSON.parse(stasis(['inspect', '--json', join(root, 'ckpt')]).stdout) as Record<string, unknown>;
    assert.equal(fromFile.checkpointDir, file);
    assert.equal(fromFile.image, `${file}:images/gen-000001`);
    assert.equal(fromFile.complete, true);
    for (const k of ['checkpointDir', 'image']) {
      delete fromFile[k];
      delete fromDir[k];
    }
    assert.deepEqual(fromFile, fromDir);

    // The same bytes on stdout (a pipe).
    const piped = spawnSync(process.execPath, [stasisBin, 'export', join(root, 'ckpt'), '-o', '-'], { maxBuffer: 1 << 30 });
    assert.equal(piped.status, 0, String(piped.stderr));
    assert.ok(Buffer.compare(piped.stdout as Buffer, readFileSync(file)) === 0, 'export to stdout differs from the file');
    // Default output name, in the current directory.
    const again = stasis(['export', join(root, 'ckpt', 'images', 'gen-000001')], { cwd: root });
    assert.equal(again.code, 0, again.stderr);
    const name = again.stdout.trim();
    assert.match(name, /export-\d+-\w+-gen-000001\.tar$/);
    assert.ok(Buffer.compare(readFileSync(name), readFileSync(file)) === 0);
    rmSync(name);

    // `tar -xf` gives a checkpoint directory that restarts as the original would.
    mkdirSync(join(root, 'untarred'));
    const tar = spawnSync('tar', ['-xf', file, '-C', join(root, 'untarred')]);
    if (tar.error === undefined) {
      assert.equal(tar.status, 0, String(tar.stderr));
      const dry = stasis(['restart', '--dry-run', join(root, 'untarred')], { cwd: root });
      assert.equal(dry.code, 0, dry.stderr);
      assert.equal(stasis(['restart', '--dry-run', file], { cwd: root }).stdout, dry.stdout);
    }

    rmSync(join(root, 'ckpt'), { recursive: true });
    const r = stasis(['restart', file], { input: 'go\ngo\n', cwd: root });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(before + r.stdout, ref.out);
    const ckpt = readdirSync(root).find((n) => n.endsWith('.ckpt'));
    assert.ok(ckpt !== undefined && /^export-\d+-\w+\.ckpt$/.test(ckpt), readdirSync(root).join(' '));
    const said = `stasis: restarting ${ckpt.slice(0, -'.ckpt'.length)} from export ${file} (generation 1); its checkpoints go to ${join(root, ckpt)} (choose with --ckpt-dir)\n`;
    assert.ok(r.stderr.startsWith(said), r.stderr);
  } finally {
    cleanup();
  }
});

/** Where things lie in the export (from its own index), to damage them on purpose. */
function layout(file: string): Map<string, { header: number; start: number; size: number }> {
  const bytes = readFileSync(file);
  const indexLen = parseInt(bytes.toString('latin1', 124, 135), 8);
  const lines = bytes.toString('latin1', 512, 512 + indexLen).split('\n');
  const out = new Map<string, { header: number; start: number; size: number }>();
  out.set('stasis-export', { header: 0, start: 512, size: indexLen });
  let at = 512 + Math.ceil(indexLen / 512) * 512;
  for (const l of lines) {
    const m = /^file (\S+) (\d+)$/.exec(l);
    if (!m) continue;
    out.set(m[1]!, { header: at, start: at + 512, size: Number(m[2]) });
    at += 512 + Math.ceil(Number(m[2]) / 512) * 512;
  }
  return out;
}

test('export: a truncated, damaged, foreign, empty or FIFO file is refused with one line and its status; nothing on disk changes', async (t) => {
  const { dir: root, cleanup } = tempDir();
  try {
    const { file } = await exported(root);
    // A restart that went ahead would cut the log, restore the database and make ./NAME.ckpt.
    appendFileSync(join(root, 'data', 'app.log'), 'stray\n');
    rmSync(join(root, 'data', 'db.bin'));
    const good = readFileSync(file);
    const at = layout(file);
    const entry = (prefix: string) => [...at.entries()].find(([k]) => k.startsWith(prefix))![1];
    const chunk = entry('chunks/');
    const copy = entry('files/');
    const module = entry('modules/');
    const bad = join(root, 'bad.tar');
    // [what, how, status, also through the CLI; for inspect, which reads no stored bytes (as
    // for a directory image), the status too unless the damage is only in stored bytes]
    const cases: [string, () => void, number, boolean, boolean?][] = [];
    for (const cut of [1, 100, 512 + 40, module.start + 10, chunk.start + Math.floor(chunk.size / 2), good.length - 1]) {
      cases.push([`cut at ${cut} of ${good.length} bytes`, () => writeFileSync(bad, good.subarray(0, cut)), 73, cut === chunk.start + Math.floor(chunk.size / 2)]);
    }
    const flips: [string, number][] = [
      ['the first header', 130], ['the index', 512 + 30], ['a manifest byte', entry('images/').start + 40],
      ['the module', module.start + module.size - 1], ['a chunk header', chunk.header + 140], ['a chunk', chunk.start + 12345],
      ['the saved copy', copy.start + 3], ['padding', copy.start + copy.size + 1], ['the end blocks', good.length - 700],
    ];
    for (const [what, pos] of flips) {
      cases.push([`a flipped byte in ${what} (at ${pos})`, () => {
        const b = Buffer.from(good);
        b[pos] ^= 0x20;
        writeFileSync(bad, b);
      }, 73, what === 'a chunk' || what === 'the saved copy', ['the module', 'a chunk', 'the saved copy'].includes(what)]);
    }
    cases.push(['a byte appended', () => writeFileSync(bad, Buffer.concat([good, Buffer.from([0])])), 73, false]);
    cases.push(['a foreign file (a wasm module)', () => writeFileSync(bad, readFileSync(PROG)), 72, true]);
    cases.push(['a tar archive of something else', () => {
      const b = Buffer.from(good);
      b.write('other-name\0\0\0\0', 0, 'latin1');
      writeFileSync(bad, b);
    }, 72, false]);
    cases.push(['an empty file', () => writeFileSync(bad, ''), 72, true]);
    cases.push(['a FIFO', () => {
      const r = spawnSync('mkfifo', [bad]);
      if (r.error !== undefined || r.status !== 0) t.skip('mkfifo is not available');
    }, 72, true]);

    const api = await import('../src/api.js');
    const refusedWith = (status: number) => (e: unknown): boolean => {
      assert.ok(e instanceof api.StasisError, String(e));
      assert.equal(e.exitCode, status, e.message);
      assert.ok(!e.message.includes('\n'), e.message);
      return true;
    };
    for (const [what, make, status, cli, storedOnly] of cases) {
      rmSync(bad, { force: true });
      make();
      if (!existsSync(bad)) continue;
      const before = tree(root);
      // In this process: what restart checks before it does anything (its --dry-run), and inspect.
      await assert.rejects(api.planRestart({ image: bad, dirs: [], env: [] }), refusedWith(status), what);
      if (storedOnly === true) await api.inspect(bad);
      else await assert.rejects(api.inspect(bad), refusedWith(status), what);
      assert.deepEqual(tree(root), before, `${what}: changed something`);
      if (!cli) continue;
      for (const cmd of [['restart', bad], ['inspect', bad]]) {
        const r = stasis(cmd, { cwd: root, input: 'go\n', timeout: 30_000 });
        assert.equal(r.signal, null, `${what}: ${cmd[0]} hung`);
        if (cmd[0] === 'inspect' && storedOnly === true) {
          assert.equal(r.code, 0, `${what}: inspect: ${r.stderr}`);
          continue;
        }
        assert.equal(r.code, status, `${what}: ${cmd.join(' ')}: ${r.stderr}`);
        assert.match(r.stderr, /^stasis: [^\n]+\n$/, `${what}: ${r.stderr}`);
        assert.ok(!r.stderr.includes('    at '), r.stderr);
        assert.deepEqual(tree(root), before, `${what}: ${cmd[0]} changed something`);
      }
    }
  } finally {
    cleanup();
  }
});

test('export: an entry of 8 GiB or more gets a size field tar reads (base-256)', (t) => {
  const { dir, cleanup } = tempDir();
  try {
    const size = 9 * 1024 ** 3 + 5;
    const file = join(dir, 'big.tar');
    // A sparse archive: the header, then a hole as the entry's bytes, then the end blocks.
    writeFileSync(file, tarHeader('files/xxh64-0123456789abcdef', size, 1_700_000_000));
    truncateSync(file, 512 + Math.ceil(size / 512) * 512 + 1024);
    const r = spawnSync('tar', ['-tvf', file], { encoding: 'utf8' });
    if (r.error !== undefined) {
      t.skip('tar is not available');
      return;
    }
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^-rw------- 0/0 +${size} 2023-11-1[45] \\d\\d:\\d\\d files/xxh64-0123456789abcdef\n$`));
  } finally {
    cleanup();
  }
});

test('export: a damaged image is not exported; bad outputs are refused; nothing is written', async () => {
  const { dir: root, cleanup } = tempDir();
  try {
    await exported(root);
    rmSync(join(root, 'x.tar'));
    const ckpt = join(root, 'ckpt');
    const before = tree(root);
    const refused = (args: string[], status: number, mention: RegExp): void => {
      const r = stasis(['export', ...args], { cwd: root });
      assert.equal(r.code, status, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /^stasis: [^\n]+\n$/);
      assert.match(r.stderr, mention);
      assert.deepEqual(tree(root), before, `${args.join(' ')} changed something`);
    };
    refused([join(root, 'nothing')], 72, /does not exist/);
    refused([ckpt, '-o', join(root, 'data')], 64, /is a directory/);
    refused([ckpt, '-o', join(root, 'no', 'such', 'x.tar')], 64, /does not exist/);
    refused([], 64, /missing IMAGE/);
    // A reader of -o - that goes away: one line, its status, no crash.
    const piped = spawnSync('bash', ['-c', `"${process.execPath}" "${stasisBin}" export "${ckpt}" -o - | head -c 10 >/dev/null; exit \${PIPESTATUS[0]}`], { encoding: 'utf8' });
    if (piped.error === undefined) {
      assert.equal(piped.status, 77, piped.stderr);
      assert.match(piped.stderr, /^stasis: export: writing to standard output failed \(EPIPE\)[^\n]*\n$/);
    }
    assert.deepEqual(tree(root), before);
    // A damaged memory chunk: refused (73), no export and no temporary file left.
    const chunks = join(ckpt, 'chunks');
    const name = readdirSync(chunks)[0]!;
    const b = readFileSync(join(chunks, name));
    b[7] ^= 1;
    writeFileSync(join(chunks, name), b);
    const damaged = tree(root);
    const r = stasis(['export', ckpt, '-o', join(root, 'x.tar')], { cwd: root });
    assert.equal(r.code, 73, r.stderr);
    assert.match(r.stderr, /^stasis: memory chunk .* does not match its xxh64 hash/);
    assert.deepEqual(tree(root), damaged);
    // A file that is not a checkpoint directory.
    writeFileSync(join(root, 'x.tar'), '');
    const again = stasis(['export', join(root, 'x.tar')], { cwd: root });
    assert.equal(again.code, 72, again.stderr);
  } finally {
    cleanup();
  }
});
