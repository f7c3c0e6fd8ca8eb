// The journal's log file (src/files/record-log.ts): records read back whole, whether the writer
// closed it or was killed with it open, across the windows it maps; a full disk is an error.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { RecordLog } from '../src/files/record-log.js';
import { nativeWindows } from '../src/wasi/native.js';
import { smallFs, tempDir } from './helpers.js';

/** Records of varied lengths (some longer than a page), 5 MiB in all: several windows. Each
 *  starts with a non-zero byte, as RecordLog asks. */
function records(): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0, bytes = 0; bytes < 5 << 20; i++) {
    const r = Buffer.from(`\u0001{"n":${i},"path":"/data/${'é'.repeat(i % 7 === 0 ? 3000 : i % 50)}"}\u0000`);
    out.push(r);
    bytes += r.length;
  }
  return out;
}

test('a RecordLog holds every record appended, closed or not (a writer killed: zeros after the last record)', () => {
  const { dir, cleanup } = tempDir();
  try {
    const all = records();
    const closed = new RecordLog(join(dir, 'closed'), 0o600);
    const open = new RecordLog(join(dir, 'open'), 0o600);
    for (const r of all) {
      closed.append(r, r.length);
      open.append(r, r.length);
    }
    closed.close();
    const bytes = Buffer.concat(all);
    assert.ok(readFileSync(join(dir, 'closed')).equals(bytes), 'closed: exactly the records');
    const left = readFileSync(join(dir, 'open'));
    assert.ok(left.subarray(0, bytes.length).equals(bytes), 'still open: the records...');
    assert.ok(left.subarray(bytes.length).every((b) => b === 0), '...then zeros');
    if (nativeWindows !== null) assert.ok(left.length > bytes.length, 'open: reserved room after the records');
    assert.equal(statSync(join(dir, 'closed')).mode & 0o777, 0o600);
  } finally {
    cleanup();
  }
});

test('a RecordLog on a full disk: append throws ENOSPC, and the records before it are kept', (t) => {
  if (nativeWindows === null) {
    t.skip('the native addon is not built: the log is written with write(2), whose ENOSPC Node reports');
    return;
  }
  const small = smallFs(t, '3m');
  if (small === null) return;
  const mnt = small.dir;
  try {
    const log = new RecordLog(join(mnt, 'log'), 0o600);
    const written: Buffer[] = [];
    assert.throws(() => {
      for (const r of records()) {
        log.append(r, r.length);
        written.push(r);
      }
    }, { code: 'ENOSPC' });
    assert.ok(written.length > 0);
    const bytes = Buffer.concat(written);
    const left = readFileSync(join(mnt, 'log'));
    assert.ok(left.subarray(0, bytes.length).equals(bytes) && left.subarray(bytes.length).every((b) => b === 0));
    log.close();
    assert.ok(readFileSync(join(mnt, 'log')).equals(bytes));
  } finally {
    small.cleanup();
  }
});
