// The journal's log file (src/files/line-log.ts): lines read back whole, whether the writer
// closed it or was killed with it open, across the windows it maps; a full disk is an error.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { LineLog, readLines } from '../src/files/line-log.js';
import { nativeWindows } from '../src/wasi/native.js';
import { smallFs, tempDir } from './helpers.js';

/** Lines of varied lengths (some longer than a page), 5 MiB in all: several windows. */
function lines(): string[] {
  const out: string[] = [];
  for (let i = 0, bytes = 0; bytes < 5 << 20; i++) {
    const l = `{"n":${i},"path":"/data/${'é'.repeat(i % 7 === 0 ? 3000 : i % 50)}"}\n`;
    out.push(l);
    bytes += Buffer.byteLength(l);
  }
  return out;
}

test('a LineLog holds every line appended, closed or not (a writer killed: zeros after the last line, which a reader drops)', () => {
  const { dir, cleanup } = tempDir();
  try {
    const all = lines();
    const closed = new LineLog(join(dir, 'closed'), 0o600);
    const open = new LineLog(join(dir, 'open'), 0o600);
    for (const l of all) {
      closed.append(l);
      open.append(l);
    }
    closed.close();
    const text = all.join('');
    assert.equal(readFileSync(join(dir, 'closed'), 'utf8'), text, 'closed: exactly the lines');
    assert.equal(readLines(join(dir, 'open')), text, 'still open: the lines, then nothing');
    if (nativeWindows !== null) assert.ok(statSync(join(dir, 'open')).size > Buffer.byteLength(text), 'open: reserved room after the lines');
    assert.equal(statSync(join(dir, 'closed')).mode & 0o777, 0o600);
  } finally {
    cleanup();
  }
});

test('a LineLog on a full disk: append throws ENOSPC, and the lines before it are kept', (t) => {
  if (nativeWindows === null) {
    t.skip('the native addon is not built: the log is written with write(2), whose ENOSPC Node reports');
    return;
  }
  const small = smallFs(t, '3m');
  if (small === null) return;
  const mnt = small.dir;
  try {
    const log = new LineLog(join(mnt, 'log'), 0o600);
    const written: string[] = [];
    assert.throws(() => {
      for (const l of lines()) {
        log.append(l);
        written.push(l);
      }
    }, { code: 'ENOSPC' });
    assert.ok(written.length > 0);
    assert.equal(readLines(join(mnt, 'log')), written.join(''));
    log.close();
    assert.equal(readFileSync(join(mnt, 'log'), 'utf8'), written.join(''));
  } finally {
    small.cleanup();
  }
});
