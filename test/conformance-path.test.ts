// Conformance of the path_* functions of WASI preview 1, driven through the real CLI.
// Each fixture (test/fixtures/src/path_*.c) calls the raw WASI imports on a fresh, empty
// preopened scratch directory, prints "FAIL <line>: ..." per failed check on stderr and
// "PASS <n>" when all n checks passed. Here we also check, from the host side, what the
// guest left on disk. Where the spec is silent, wasmtime (cap-std) and wasi-testsuite are
// the reference; the fixtures say so next to each such check.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { lstatSync, readFileSync, readdirSync, readlinkSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fixture, stasis, tempDir, type RunResult } from './helpers.js';

/** Number of checks each fixture makes: a run that stops early or skips some cannot pass. */
const CHECKS = {
  path_open: 185,
  path_dirops: 136,
  path_links: 133,
  path_errors: 134,
} as const;

function assertPassed(name: keyof typeof CHECKS, r: RunResult): void {
  const why = `${name}: exit ${r.code}${r.signal ? ` (signal ${r.signal})` : ''}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`;
  assert.equal(r.code, 0, why);
  assert.match(r.stdout, new RegExp(`^PASS ${CHECKS[name]}$`, 'm'), why);
  assert.doesNotMatch(r.stderr, /^FAIL /m, why);
}

/** Runs fixture NAME with a fresh empty directory preopened as /scratch; returns the host dir. */
function runScratch(name: keyof typeof CHECKS, t: { after: (fn: () => void) => void }): string {
  const { dir, cleanup } = tempDir('stasis-path-');
  t.after(cleanup);
  const r = stasis(['run', '--dir', `${dir}::/scratch`, fixture(name), '/scratch']);
  assertPassed(name, r);
  return dir;
}

const text = (p: string) => readFileSync(p, 'utf8');
const kind = (p: string) => {
  const st = lstatSync(p, { throwIfNoEntry: false });
  if (!st) return 'absent';
  return st.isSymbolicLink() ? 'symlink' : st.isDirectory() ? 'dir' : st.isFile() ? 'file' : 'other';
};
const SEC_MS = 1000;

test('path_open: oflags, fdflags, lookupflags, rights and errors', (t) => {
  const dir = runScratch('path_open', t);
  assert.equal(text(join(dir, 'f1')), 'abc');
  assert.equal(text(join(dir, 'd/inner')), 'inner!');
  assert.equal(statSync(join(dir, 'excl_new')).size, 0);
  assert.equal(readlinkSync(join(dir, 'sl_f')), 'f1');
  assert.equal(readlinkSync(join(dir, 'sl_dang')), 'nowhere');
  assert.equal(kind(join(dir, 'nowhere')), 'file', 'creat through a followed dangling symlink creates its target');
  // "abcdef" from the append test; a sync flag that was honoured overwrote the first byte with "g"
  assert.match(text(join(dir, 'app')), /^[ag]bcdef$/);
  for (const p of ['newd', 'nodir', 'missing', 'missing2', 'fresh_bad', 'd/made_here']) {
    assert.equal(kind(join(dir, p)), 'absent', `${p} must not exist`);
  }
});

test('path_open: a preopen given without ::GUEST is named by its host path as written', (t) => {
  const { dir, cleanup } = tempDir('stasis-path-');
  t.after(cleanup);
  const r = stasis(['run', '--dir', dir, fixture('path_open'), dir]);
  assertPassed('path_open', r);
});

test('path_create_directory, path_remove_directory, path_unlink_file, path_rename', (t) => {
  const dir = runScratch('path_dirops', t);
  const top = readdirSync(dir).sort();
  assert.deepEqual(top, ['cd', 'cd_dangling', 'cd_link', 'cf', 'full', 'moved3', 'sym2', 'ud', 'x_back']);
  assert.deepEqual(readdirSync(join(dir, 'cd')).sort(), ['dots', 'nested', 'slash', 'via_link']);
  assert.equal(readlinkSync(join(dir, 'cd_link')), 'cd');
  assert.equal(readlinkSync(join(dir, 'cd_dangling')), 'cd_target');
  assert.equal(text(join(dir, 'cf')), 'file');
  assert.deepEqual(readdirSync(join(dir, 'ud')), ['target']);
  assert.equal(text(join(dir, 'ud/target')), 'keep');
  assert.deepEqual(readdirSync(join(dir, 'full')), ['c_again']);
  assert.equal(text(join(dir, 'full/c_again')), 'AAA');
  assert.equal(text(join(dir, 'x_back')), 'x');
  assert.deepEqual(readdirSync(join(dir, 'moved3')), ['inner']);
  assert.equal(text(join(dir, 'moved3/inner')), 'in');
  assert.equal(kind(join(dir, 'sym2')), 'file');
  assert.equal(text(join(dir, 'sym2')), 'OVER');
});

test('path_symlink, path_readlink, path_link, path_filestat_get, path_filestat_set_times', (t) => {
  const dir = runScratch('path_links', t);
  assert.equal(text(join(dir, 'target_file')), 'contents');
  assert.equal(readlinkSync(join(dir, 'sym')), 'target_file');
  assert.equal(readlinkSync(join(dir, 'dd/up')), '../target_file');
  assert.equal(readlinkSync(join(dir, 'dangling')), 'will_not_exist');
  assert.equal(readlinkSync(join(dir, 'loop')), 'loop');
  assert.equal(kind(join(dir, 'will_not_exist')), 'absent');
  // hard links: orig, hl, dd/hl_in_dd, hl_back share one inode
  const orig = lstatSync(join(dir, 'orig'));
  assert.equal(orig.nlink, 4);
  for (const p of ['hl', 'dd/hl_in_dd', 'hl_back']) assert.equal(lstatSync(join(dir, p)).ino, orig.ino, p);
  // a hard link of a symlink is that symlink
  assert.equal(kind(join(dir, 'sym_hl')), 'symlink');
  assert.equal(lstatSync(join(dir, 'sym_hl')).ino, lstatSync(join(dir, 'sym')).ino);
  assert.equal(readlinkSync(join(dir, 'dangling_hl')), 'will_not_exist');
  for (const p of ['hl2', 'target', 'dangling_follow_hl']) assert.equal(kind(join(dir, p)), 'absent', p);
  // times as the fixture left them
  const times = statSync(join(dir, 'times'));
  assert.equal(times.atimeMs, 1_000_000_000 * SEC_MS);
  assert.equal(times.mtimeMs, 1_100_000_000 * SEC_MS);
  assert.equal(lstatSync(join(dir, 'lt')).mtimeMs, 1_200_000_000 * SEC_MS, 'the symlink itself');
  assert.equal(statSync(join(dir, 'lt_target')).mtimeMs, 1_000_000_000 * SEC_MS, 'the target');
  assert.equal(statSync(join(dir, 'dd')).mtimeMs, 1_100_000_000 * SEC_MS, 'a directory');
});

test('path_* error paths: EBADF, ENOTDIR, ENOTCAPABLE, NUL bytes, invalid UTF-8', (t) => {
  const dir = runScratch('path_errors', t);
  // nothing was created by refused calls: no truncated-at-NUL names, no mangled UTF-8 names
  assert.deepEqual(readdirSync(dir), ['w']);
  assert.deepEqual(readdirSync(join(dir, 'w')).sort(), ['f', 'hl', 'hl_ok', 'hl_ok2', 'lnk', 'nd', 'ok_\u00e9\u20ac', 'sub']);
  assert.equal(readlinkSync(join(dir, 'w/lnk')), 'f');
  assert.equal(lstatSync(join(dir, 'w/f')).nlink, 4);
  assert.deepEqual(readdirSync(join(dir, 'w/sub')), []);
});
