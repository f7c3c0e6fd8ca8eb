// Tests for src/wasi/native.ts: nanosecond-exact timestamps via the optional
// native addon, and the fs.*utimes* fallback (within 1 µs) when it is absent.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tempDir } from './helpers.js';
import {
  nativeAdviseHugePages,
  nativeIovecIo,
  nativeTimestamps,
  nativeLoadError,
  nsToSeconds,
  setTimesFd,
  setTimesPath,
} from '../src/wasi/native.js';

// Odd, non-µs-aligned instants (2020-09-13 and 2021-01-01-ish).
const T1 = 1_600_000_000_123_456_789n;
const T2 = 1_609_459_200_987_654_321n;
const T3 = 1_500_000_000_000_000_001n;

/** Exact with the addon; within 1 µs with the fs fallback. */
function assertTime(actual: bigint, expected: bigint, what: string): void {
  if (nativeTimestamps) {
    assert.equal(actual, expected, `${what}: exact`);
  } else {
    const d = actual > expected ? actual - expected : expected - actual;
    assert.ok(d <= 1000n, `${what}: ${actual} within 1 µs of ${expected} (off by ${d} ns)`);
  }
}

function assertNearNow(actualNs: bigint, before: number, after: number, what: string): void {
  const ms = Number(actualNs / 1_000_000n);
  // Kernel "now" is coarse-grained (a tick or so behind the wall clock).
  assert.ok(ms >= before - 1000 && ms <= after + 1000, `${what}: ${ms} near [${before}, ${after}]`);
}

const bstat = (p: string) => fs.statSync(p, { bigint: true });
const blstat = (p: string) => fs.lstatSync(p, { bigint: true });

function withFile(fn: (dir: string, file: string) => void): void {
  const { dir, cleanup } = tempDir('stasis-native-');
  try {
    const file = join(dir, 'f.txt');
    fs.writeFileSync(file, 'hello');
    fn(dir, file);
  } finally {
    cleanup();
  }
}

test(`native addon status (nativeTimestamps=${nativeTimestamps})`, () => {
  if (!nativeTimestamps) assert.equal(typeof nativeLoadError, 'string');
  else assert.equal(nativeLoadError, null);
});

test('iovecIo: readv/writev straight into memory, batches, short transfers, EFAULT before any byte moves', { skip: nativeIovecIo === null && 'addon not built' }, () => {
  const io = nativeIovecIo!;
  const { dir, cleanup } = tempDir();
  try {
    const file = join(dir, 'f');
    const data = Buffer.from(Array.from({ length: 300 }, (_, i) => i & 0xff));
    fs.writeFileSync(file, data);
    const mem = new ArrayBuffer(65536);
    const bytes = new Uint8Array(mem);
    const view = new DataView(mem);
    /** Writes iovecs (ptr, len) at address at. */
    const iovecs = (at: number, list: [number, number][]): void =>
      list.forEach(([p, l], i) => { view.setUint32(at + i * 8, p, true); view.setUint32(at + i * 8 + 4, l, true); });
    const fd = fs.openSync(file, 'r+');
    try {
      // 200 one-byte iovecs (more than one batch of 64), one empty among them, at offset 10.
      const list: [number, number][] = Array.from({ length: 200 }, (_, i) => [4096 + i * 2, i === 7 ? 0 : 1]);
      iovecs(0, list);
      assert.equal(io(fd, mem, 0, 200, 10, false), 199);
      for (let i = 0, k = 10; i < 200; i++) if (i !== 7) assert.equal(bytes[4096 + i * 2], data[k++]!, `iovec ${i}`);
      // Short at EOF: stops there (290 of 300 left from offset 10 would need 290; ask 400 in 2).
      iovecs(0, [[8192, 200], [16384, 200]]);
      assert.equal(io(fd, mem, 0, 2, 10, false), 290);
      assert.deepEqual(Buffer.from(bytes.subarray(8192, 8392)), data.subarray(10, 210));
      // pos -1: the fd's own position, which moves.
      iovecs(0, [[8192, 5]]);
      assert.equal(io(fd, mem, 0, 1, -1, false), 5);
      assert.equal(io(fd, mem, 0, 1, -1, false), 5);
      assert.deepEqual(Buffer.from(bytes.subarray(8192, 8197)), data.subarray(5, 10));
      // Writes, positional.
      bytes.set(Buffer.from('XYZ'), 100);
      iovecs(0, [[100, 2], [102, 1]]);
      assert.equal(io(fd, mem, 0, 2, 1, true), 3);
      assert.deepEqual(fs.readFileSync(file).subarray(0, 5), Buffer.from([0, 88, 89, 90, 4]));
      // The iovecs are read once, before anything moves: a read that overwrites the array's
      // later entries does not redirect them. 1,100 iovecs (more than one syscall's worth):
      // the first reads 8 bytes over entry 1,050, which the file would turn into {60000, 8}.
      const evilFile = join(dir, 'evil');
      const evil = Buffer.alloc(4096, 7);
      evil.writeUInt32LE(60000, 0);
      evil.writeUInt32LE(8, 4);
      fs.writeFileSync(evilFile, evil);
      const efd = fs.openSync(evilFile, 'r');
      try {
        const many: [number, number][] = [[1000 + 1050 * 8, 8]];
        for (let i = 1; i < 1100; i++) many.push([20000 + i, 1]);
        iovecs(1000, many);
        bytes.fill(0, 59990, 60010);
        bytes.fill(0, 20000, 21100);
        assert.equal(io(efd, mem, 1000, 1100, 0, false), 8 + 1099);
        assert.ok(bytes.subarray(59990, 60010).every((b) => b === 0), 'nothing went where the overwritten entry points');
        assert.ok(bytes.subarray(20001, 21100).every((b) => b === 7), 'every other iovec got its byte');
      } finally {
        fs.closeSync(efd);
      }
      // EFAULT (-14) for a buffer or the iovec array outside memory, before anything moves.
      iovecs(0, [[200, 1], [65535, 2]]);
      assert.equal(io(fd, mem, 0, 2, 0, true), -14);
      assert.equal(io(fd, mem, 65532, 1, 0, false), -14);
      assert.equal(io(fd, mem, 0, 0xffffffff, 0, false), -14);
      assert.deepEqual(fs.readFileSync(file).subarray(0, 5), Buffer.from([0, 88, 89, 90, 4]));
    } finally {
      fs.closeSync(fd);
    }
    // A syscall's own error comes back as -errno.
    const ro = fs.openSync(file, 'r');
    try {
      iovecs(0, [[200, 1]]);
      assert.equal(io(ro, mem, 0, 1, 0, true), -9); // EBADF: not open for writing
    } finally {
      fs.closeSync(ro);
    }
  } finally {
    cleanup();
  }
});

test('adviseHugePages: a hint on a buffer not touched yet; its contents as written; anything but bytes refused', { skip: nativeAdviseHugePages === null && 'addon not built' }, () => {
  const advise = nativeAdviseHugePages!;
  const buf = new Uint8Array(8 << 20);
  const r = advise(buf);
  // 0, or the kernel's refusal (no transparent huge pages): never a change to the bytes.
  assert.ok(r === 0 || r === -22 || r === -38, `madvise: ${r}`);
  for (let i = 0; i < buf.length; i += 4093) buf[i] = (i % 255) + 1;
  for (let i = 0; i < buf.length; i += 4093) {
    assert.equal(buf[i], (i % 255) + 1, `byte ${i}`);
    if (i + 1 < buf.length) assert.equal(buf[i + 1], 0, `byte ${i + 1}`);
  }
  assert.equal(advise(new Uint16Array(8) as unknown as Uint8Array), -22);
  assert.equal(advise(42 as unknown as Uint8Array), -22);
});

test('setTimesPath sets both times to odd nanosecond values', () => {
  withFile((_dir, file) => {
    setTimesPath(file, T1, T2, true);
    const st = bstat(file);
    assertTime(st.atimeNs, T1, 'atime');
    assertTime(st.mtimeNs, T2, 'mtime');
  });
});

test('setTimesFd sets mtime exactly and leaves atime alone when null', () => {
  withFile((_dir, file) => {
    setTimesPath(file, T1, T2, true);
    const before = bstat(file);
    const fd = fs.openSync(file, 'r+');
    try {
      setTimesFd(fd, null, T3);
    } finally {
      fs.closeSync(fd);
    }
    const st = bstat(file);
    assertTime(st.mtimeNs, T3, 'mtime');
    assertTime(st.atimeNs, before.atimeNs, 'atime untouched');
    if (nativeTimestamps) assert.equal(st.atimeNs, T1);
  });
});

test('setTimesFd leaves mtime alone when null', () => {
  withFile((_dir, file) => {
    setTimesPath(file, T1, T2, true);
    const fd = fs.openSync(file, 'r+');
    try {
      setTimesFd(fd, T3, null);
    } finally {
      fs.closeSync(fd);
    }
    const st = bstat(file);
    assertTime(st.atimeNs, T3, 'atime');
    assertTime(st.mtimeNs, T2, 'mtime untouched');
  });
});

test('wasi-testsuite pattern: mtime = old - 100 ns round-trips', () => {
  withFile((_dir, file) => {
    const old = bstat(file);
    setTimesPath(file, null, old.mtimeNs - 100n, true);
    assertTime(bstat(file).mtimeNs, old.mtimeNs - 100n, 'path mtime');
    const fd = fs.openSync(file, 'r');
    try {
      const cur = fs.fstatSync(fd, { bigint: true });
      setTimesFd(fd, cur.atimeNs - 100n, null);
      assertTime(fs.fstatSync(fd, { bigint: true }).atimeNs, cur.atimeNs - 100n, 'fd atime');
    } finally {
      fs.closeSync(fd);
    }
  });
});

test("'now' sets the current time; the other field stays", () => {
  withFile((_dir, file) => {
    setTimesPath(file, T1, T2, true);
    let before = Date.now();
    setTimesPath(file, null, 'now', true);
    let after = Date.now();
    let st = bstat(file);
    assertNearNow(st.mtimeNs, before, after, 'path mtime now');
    assertTime(st.atimeNs, T1, 'atime untouched');

    const fd = fs.openSync(file, 'r+');
    try {
      before = Date.now();
      setTimesFd(fd, 'now', T3);
      after = Date.now();
    } finally {
      fs.closeSync(fd);
    }
    st = bstat(file);
    assertNearNow(st.atimeNs, before, after, 'fd atime now');
    assertTime(st.mtimeNs, T3, 'mtime');
  });
});

test('symlinks: follow changes the target, nofollow only the link itself', () => {
  withFile((dir, file) => {
    const link = join(dir, 'link');
    fs.symlinkSync('f.txt', link);
    setTimesPath(file, T1, T1, true);
    setTimesPath(link, T1, T1, false);
    assertTime(blstat(link).mtimeNs, T1, 'link initial mtime');

    // nofollow: the link's own mtime changes, the target's does not.
    setTimesPath(link, null, T2, false);
    const linkSt = blstat(link);
    const targetSt = bstat(file);
    assertTime(linkSt.mtimeNs, T2, 'link mtime (nofollow)');
    assertTime(linkSt.atimeNs, T1, 'link atime untouched');
    assertTime(targetSt.mtimeNs, T1, 'target mtime untouched');
    assert.notEqual(targetSt.mtimeNs, linkSt.mtimeNs);

    // follow: the target changes, the link's own times do not.
    const linkBefore = blstat(link);
    setTimesPath(link, null, T3, true);
    assertTime(bstat(file).mtimeNs, T3, 'target mtime (follow)');
    assertTime(bstat(link).mtimeNs, T3, 'stat through link');
    assert.equal(blstat(link).mtimeNs, linkBefore.mtimeNs, 'link mtime untouched (follow)');
  });
});

test('errors look like Node fs errors', () => {
  withFile((dir) => {
    const missing = join(dir, 'nope');
    for (const follow of [true, false]) {
      assert.throws(() => setTimesPath(missing, T1, T2, follow), (e: NodeJS.ErrnoException) => {
        assert.ok(e instanceof Error);
        assert.equal(e.code, 'ENOENT');
        assert.equal(e.errno, -2);
        assert.match(e.message, /^ENOENT: /);
        return true;
      });
    }
    // Both times null still reports a missing file.
    assert.throws(() => setTimesPath(missing, null, null, true), { code: 'ENOENT' });

    // A symlink loop: ELOOP when following.
    fs.symlinkSync('b', join(dir, 'a'));
    fs.symlinkSync('a', join(dir, 'b'));
    assert.throws(() => setTimesPath(join(dir, 'a'), T1, T2, true), { code: 'ELOOP' });
    setTimesPath(join(dir, 'a'), T1, T2, false); // the link itself is fine
    assertTime(blstat(join(dir, 'a')).mtimeNs, T2, 'loop link mtime');

    // A bad descriptor.
    const fd = fs.openSync(join(dir, 'f.txt'), 'r');
    fs.closeSync(fd);
    assert.throws(() => setTimesFd(fd, T1, T2), { code: 'EBADF' });
    assert.throws(() => setTimesFd(fd, null, 'now'), { code: 'EBADF' });
  });
});

test('nsToSeconds lands inside the right microsecond', () => {
  for (const t of [T1, T2, T3, 0n, 999n, 1_000_000_000n, 1_999_999_999_999n]) {
    const s = nsToSeconds(t);
    // What libuv does: timespec from the double, then truncate to whole µs.
    const sec = Math.trunc(s);
    let nsec = Math.trunc((s - sec) * 1e9);
    nsec -= nsec % 1000;
    const got = BigInt(sec) * 1_000_000_000n + BigInt(nsec);
    const d = got > t ? got - t : t - got;
    assert.ok(d <= 500n, `${t}: got ${got}`);
  }
});

test('fallback path passes too (child run with STASIS_NO_NATIVE=1)', { skip: !nativeTimestamps }, () => {
  const self = fileURLToPath(import.meta.url);
  const env: NodeJS.ProcessEnv = { ...process.env, STASIS_NO_NATIVE: '1' };
  delete env.NODE_TEST_CONTEXT; // else the child reports to us over a side channel
  const r = spawnSync(process.execPath, ['--test', '--test-reporter=tap', self], {
    env,
    encoding: 'utf8',
    timeout: 60_000,
  });
  assert.equal(r.status, 0, `child test run failed:\n${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, /nativeTimestamps=false/);
});
