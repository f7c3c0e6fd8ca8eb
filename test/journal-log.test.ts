// The undo journal's entries in its log (src/files/journal-log.ts): every kind read back as
// written, through a real log file; a writer killed before or in the middle of a record leaves
// nothing of it; a damaged record is reported by number; a log of the earlier format is read.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { decodeEntries, EntryEncoder, type Cancel, type JournalEntry } from '../src/files/journal-log.js';
import { readJournal } from '../src/files/journal.js';
import { RecordLog } from '../src/files/record-log.js';
import { tempDir } from './helpers.js';

const long = `/data/${'ünï/'.repeat(2000)}end`; // longer than the encoder's first buffer
const entries: (JournalEntry | Cancel)[] = [
  { op: 'created', path: '/data/tmp-result' },
  { op: 'created', path: '/data/café ☕ 𝄞' },
  { op: 'renamed', from: '/data/tmp-result', to: '/data/result-000001' },
  { op: 'renamed', from: long, to: '/data/é' },
  { op: 'failed', entry: 3 },
  { op: 'removed', path: '/data/old', kind: 'file', mode: 0o640, saved: 'files/1', atimeNs: '1700000000123456789', mtimeNs: '1700000000987654321' },
  { op: 'removed', path: '/data/d', kind: 'dir', mode: 0o755 },
  { op: 'removed', path: '/data/l', kind: 'symlink', mode: 0o777, target: '../x' },
  { op: 'size', path: '/data/db', size: 1 << 20, atimeNs: '1', mtimeNs: '2' },
  { op: 'block', path: '/data/db', pos: 65536, len: 65536, at: 0 },
  { op: 'times', path: '/data', atimeNs: '3', mtimeNs: '4' },
  { op: 'lost', path: long, why: 'EACCES' },
  { op: 'created', path: '' },
  // Paths sharing a prefix that ends inside a character of two UTF-16 code units.
  { op: 'created', path: '/data/𝄞a' },
  { op: 'renamed', from: '/data/𝄞b', to: '/data/\ud834\udd1f' },
  { op: 'created', path: '/data/x'.repeat(0x3000) },
  { op: 'created', path: '/data/x'.repeat(0x3000) + 'y' },
];

/** The log of `list`, as the recorder writes it. */
function logOf(list: (JournalEntry | Cancel)[], file: string, close = true): void {
  const enc = new EntryEncoder();
  const log = new RecordLog(file, 0o600);
  for (const e of list) {
    const n = enc.encode(e);
    log.append(enc.bytes, n);
    enc.written();
  }
  if (close) log.close();
}

const keepGoing = (): null => null;

test('journal log: every kind of entry is read back as written, closed or left open', () => {
  const { dir, cleanup } = tempDir();
  try {
    logOf(entries, join(dir, 'closed'));
    logOf(entries, join(dir, 'open'), false); // killed with it open: zeros after the last record
    for (const f of ['closed', 'open']) assert.deepEqual(decodeEntries(readFileSync(join(dir, f)), keepGoing), entries, f);
    // readJournal drops a cancelled entry with its cancel.
    mkdirSync(join(dir, 'gen'));
    logOf(entries, join(dir, 'gen', 'log'));
    assert.deepEqual(readJournal(join(dir, 'gen'), keepGoing), entries.filter((e, i) => e.op !== 'failed' && i !== 3));
  } finally {
    cleanup();
  }
});

test('journal log: a record cut short or not yet committed is not there (its change was never made)', () => {
  const { dir, cleanup } = tempDir();
  try {
    const file = join(dir, 'log');
    logOf(entries.slice(0, 3), file);
    const whole = readFileSync(file);
    logOf(entries.slice(0, 2), file);
    const two = readFileSync(file);
    const third = whole.subarray(two.length);
    // Killed during a write(2) of the third record (no native addon): the file ends inside it.
    for (const cut of [1, 4, 5, third.length - 1]) {
      assert.deepEqual(decodeEntries(Buffer.concat([two, third.subarray(0, cut)]), keepGoing), entries.slice(0, 2), `cut at ${cut}`);
    }
    // Killed while storing it into the mapped log: all of it but its first byte, then zeros.
    const uncommitted = Buffer.concat([two, Buffer.from([0]), third.subarray(1), Buffer.alloc(4096)]);
    assert.deepEqual(decodeEntries(uncommitted, keepGoing), entries.slice(0, 2));
  } finally {
    cleanup();
  }
});

test('journal log: a damaged record is reported by its number, or ends the reading', () => {
  const { dir, cleanup } = tempDir();
  try {
    const file = join(dir, 'log');
    logOf(entries.slice(0, 3), file);
    const log = readFileSync(file);
    logOf(entries.slice(0, 1), file);
    const first = readFileSync(file).length;
    const bad = Buffer.from(log);
    bad[first] = 0x7f; // the second record's kind
    assert.throws(() => decodeEntries(bad, (n) => new Error(`damaged at entry ${n}`)), /damaged at entry 2/);
    assert.deepEqual(decodeEntries(bad, keepGoing), entries.slice(0, 1));
    const cancel = readFileSync(file);
    const enc = new EntryEncoder();
    const n = enc.encode({ op: 'failed', entry: 1 }); // cancels an entry that is not before it
    assert.throws(() => decodeEntries(Buffer.concat([cancel, enc.bytes.subarray(0, n)]), (k) => new Error(`damaged at entry ${k}`)), /damaged at entry 2/);
  } finally {
    cleanup();
  }
});

test('journal log: a log of the earlier format (one JSON entry a line) is read', () => {
  const { dir, cleanup } = tempDir();
  try {
    const lines = entries.map((e) => JSON.stringify(e) + '\n').join('');
    writeFileSync(join(dir, 'log'), Buffer.concat([Buffer.from(lines + '{"op":"cre'), Buffer.alloc(100)]));
    assert.deepEqual(decodeEntries(readFileSync(join(dir, 'log')), keepGoing), entries);
  } finally {
    cleanup();
  }
});
