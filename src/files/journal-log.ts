// The undo journal's entries as records of its log (record-log.ts). The program's thread writes
// one for nearly every file it makes, renames or removes, so those are packed: a kind byte and
// the payload's length (u32, little-endian), then the paths, each as the number of UTF-16 code
// units it shares with the path before it in the log (u16) and the rest in UTF-8 ('renamed':
// the rest of `from` preceded by its length in bytes, u32). Consecutive paths mostly share
// their directory: fewer bytes, fewer pages of the log touched. Entries written once per file
// or block (`size`, `block`, `removed`...) are JSON. A log written before this format (one
// JSON entry a line) is still read.

/** One change, as it is undone. Paths are host paths; `saved` is relative to the journal. */
export type JournalEntry =
  | { op: 'created'; path: string }
  | { op: 'removed'; path: string; kind: 'file' | 'dir' | 'symlink'; mode: number; saved?: string; target?: string; atimeNs?: string; mtimeNs?: string }
  | { op: 'renamed'; from: string; to: string }
  /** The file's first change in the generation: its size and times then. */
  | { op: 'size'; path: string; size: number; atimeNs?: string; mtimeNs?: string }
  | { op: 'block'; path: string; pos: number; len: number; at: number }
  | { op: 'times'; path: string; atimeNs: string; mtimeNs: string }
  /** What was there could not be saved (e.g. a file this user may not read): the change goes
   *  ahead, and a restart refuses to roll back rather than half-undo it. */
  | { op: 'lost'; path: string; why: string };

/** In the log only: the change of entry number `entry` (from 0) failed; readJournal drops both. */
export type Cancel = { op: 'failed'; entry: number };

const CREATED = 1;
const RENAMED = 2;
const FAILED = 3;
const JSON_ENTRY = 4;
/** Kind byte and payload length. */
const HEAD = 5;

const utf8 = new TextEncoder();

/** Longest prefix a path is said to share with the one before it. */
const MAX_SHARED = 0xffff;

/**
 * Encodes one log's entries into one reused buffer: `encode` returns the record's length in
 * `bytes`; `written` says it is in the log (the next record's paths are told relative to it).
 */
export class EntryEncoder {
  bytes = new Uint8Array(1024);
  private n = 0;
  /** The last path in the log, and the last one encoded. */
  private prev = '';
  private next = '';

  written(): void {
    this.prev = this.next;
  }

  encode(e: JournalEntry | Cancel): number {
    this.n = HEAD;
    this.next = this.prev;
    let kind: number;
    switch (e.op) {
      case 'created':
        this.path(e.path);
        kind = CREATED;
        break;
      case 'renamed': {
        this.path(e.from, true);
        this.path(e.to);
        kind = RENAMED;
        break;
      }
      case 'failed':
        this.room(4);
        this.u32(this.n, e.entry);
        this.n += 4;
        kind = FAILED;
        break;
      default:
        this.str(JSON.stringify(e));
        kind = JSON_ENTRY;
    }
    this.u32(1, this.n - HEAD);
    this.bytes[0] = kind;
    return this.n;
  }

  /** A path, told relative to the one before it; `sized`: the length of its rest first. */
  private path(p: string, sized = false): void {
    const prev = this.next;
    const most = Math.min(p.length, prev.length, MAX_SHARED);
    let k = 0;
    while (k < most && p.charCodeAt(k) === prev.charCodeAt(k)) k++;
    if (k > 0 && k < p.length && isHighSurrogate(p.charCodeAt(k - 1))) k--; // not half a character
    this.room(2 + (sized ? 4 : 0));
    this.bytes[this.n++] = k & 0xff;
    this.bytes[this.n++] = k >>> 8;
    const at = this.n;
    if (sized) this.n += 4;
    this.str(p, k);
    if (sized) this.u32(at, this.n - at - 4);
    this.next = p;
  }

  /** s[from...] in UTF-8 (most paths are ASCII: copied here, without a call out of JavaScript). */
  private str(s: string, from = 0): void {
    this.room((s.length - from) * 3);
    const b = this.bytes;
    let at = this.n;
    for (let i = from; i < s.length; i++) {
      const c = s.charCodeAt(i);
      if (c >= 0x80) {
        at = this.n + utf8.encodeInto(from === 0 ? s : s.slice(from), b.subarray(this.n)).written;
        break;
      }
      b[at++] = c;
    }
    this.n = at;
  }

  private u32(at: number, v: number): void {
    const b = this.bytes;
    b[at] = v & 0xff;
    b[at + 1] = (v >>> 8) & 0xff;
    b[at + 2] = (v >>> 16) & 0xff;
    b[at + 3] = v >>> 24;
  }

  private room(more: number): void {
    if (this.n + more <= this.bytes.length) return;
    const grown = new Uint8Array(Math.max(this.bytes.length * 2, this.n + more));
    grown.set(this.bytes.subarray(0, this.n));
    this.bytes = grown;
  }
}

/**
 * The entries in a log's bytes, up to the first zero where a record would start (a writer
 * killed with the log open) or a last record cut short (its change was never made).
 * `damaged(n)` says what to throw for a bad entry number n (from 1; null: stop reading there).
 */
export function decodeEntries(log: Buffer, damaged: (entry: number) => Error | null): (JournalEntry | Cancel)[] {
  if (log[0] === 0x7b /* '{' */) return decodeLines(log, damaged);
  const out: (JournalEntry | Cancel)[] = [];
  const paths = new PathReader(log);
  for (let at = 0; at + HEAD <= log.length && log[at] !== 0;) {
    const start = at + HEAD;
    const end = start + log.readUInt32LE(at + 1);
    if (end > log.length) break;
    const e = checked(() => decodeRecord(log, log[at]!, start, end, paths), out.length, damaged);
    if (e === null) break;
    out.push(e);
    at = end;
  }
  return out;
}

function decodeRecord(log: Buffer, kind: number, start: number, end: number, paths: PathReader): JournalEntry | Cancel {
  switch (kind) {
    case CREATED:
      return { op: 'created', path: paths.read(start, start + 2, end, end) };
    case RENAMED: {
      if (start + 6 > end) throw new Error('not an entry');
      const to = start + 6 + log.readUInt32LE(start + 2);
      return { op: 'renamed', from: paths.read(start, start + 6, to, end), to: paths.read(to, to + 2, end, end) };
    }
    case FAILED:
      if (end - start !== 4) throw new Error('not an entry');
      return { op: 'failed', entry: log.readUInt32LE(start) };
    case JSON_ENTRY:
      return JSON.parse(log.toString('utf8', start, end)) as JournalEntry;
    default:
      throw new Error('not an entry');
  }
}

/** Paths as EntryEncoder writes them, each relative to the one before. */
class PathReader {
  private prev = '';
  constructor(private readonly log: Buffer) {}

  /** The path whose shared length is at `at` and rest at [rest, end) (within a record ending at `limit`). */
  read(at: number, rest: number, end: number, limit: number): string {
    if (rest > end || end > limit) throw new Error('not an entry');
    const shared = this.log.readUInt16LE(at);
    if (shared > this.prev.length) throw new Error('not an entry');
    this.prev = this.prev.slice(0, shared) + this.log.toString('utf8', rest, end);
    return this.prev;
  }
}

const isHighSurrogate = (c: number): boolean => c >= 0xd800 && c <= 0xdbff;

/** Entry number `n` (from 0) decoded and checked, or null where reading stops at a bad one
 *  (else what `damaged` says is thrown). */
function checked(decode: () => JournalEntry | Cancel, n: number, damaged: (entry: number) => Error | null): JournalEntry | Cancel | null {
  try {
    const e = decode();
    checkEntry(e, n);
    return e;
  } catch {
    const err = damaged(n + 1);
    if (err === null) return null;
    throw err;
  }
}

/** Entry number `n`, as far as the reader relies on it. */
function checkEntry(e: JournalEntry | Cancel, n: number): void {
  if (typeof e !== 'object' || e === null || typeof e.op !== 'string') throw new Error('not an entry');
  if (e.op === 'failed' && !(Number.isSafeInteger(e.entry) && e.entry >= 0 && e.entry < n)) throw new Error('not an entry');
}

/** The earlier format: one JSON entry a line, zeros after the last line of a log left open. */
function decodeLines(log: Buffer, damaged: (entry: number) => Error | null): (JournalEntry | Cancel)[] {
  const z = log.indexOf(0);
  const lines = log.toString('utf8', 0, z < 0 ? log.length : z).split('\n');
  lines.pop(); // '' after the last newline, or an entry cut short
  const out: (JournalEntry | Cancel)[] = [];
  for (const line of lines) {
    const e = checked(() => JSON.parse(line) as JournalEntry | Cancel, out.length, damaged);
    if (e === null) break;
    out.push(e);
  }
  return out;
}
