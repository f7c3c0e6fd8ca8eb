// The `journal` group: what the undo journal (src/files/journal.ts) costs a program, against
// the same program under --no-rollback (DMTCP's behaviour: no journal), in the same bench run.
//
// The journal records only after a checkpoint, so each row's program is checkpointed at its
// first WASI call (`launch --checkpoint-at-call 1`, which stops it), and each timed run is a
// `stasis restart` of a fresh copy of that image and of the program's directory: journaled
// by default, not with --no-rollback. The restart's own cost is taken out by restarting, the
// same way, an image of the same program given no work (its "zero" arguments); a row's time
// is the median of the work image minus the median of the zero image. The modes alternate run
// by run. Every run's stdout and files must be identical in both modes.
//
// Each row also reports the restarts' user and system CPU time (of the reaped child processes):
// the journal's own work is user time (it makes few system calls), while on an ext4 without a
// journal each create's system time depends on the inodes freed in the minutes before (the
// kernel skips them), which makes the wall-clock medians of both modes move by more than the
// journal costs.
//
// journal-rewrite also reports the journal's bytes against the bytes the program wrote over,
// and its extra time against a plain copy of those bytes (copy_file_range, no fsync: the
// journal is not fsynced either).
import { spawnSync } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BenchFailure, median, type Paths } from './ckpt.js';

export interface JournalRow {
  name: string;
  title: string;
  wasm: string;
  /** Guest arguments for the work, and for no work (the restart's own cost). */
  args: (guest: string) => string[];
  zeroArgs: (guest: string) => string[];
  /** Fills the program's directory for an image. */
  setup?: (host: string, variant: 'work' | 'zero') => void;
  /** Bytes of an existing file the program writes over (journal-rewrite): reported against the journal. */
  overwrites?: { file: string; bytes: number };
}

export interface JournalResult {
  name: string;
  title: string;
  /** Medians, ms: the work image's restart minus the zero image's, journaled and not. */
  onMs: number;
  offMs: number;
  ratio: number;
  /** The same from the restarts' user and system CPU time. */
  onUserMs: number;
  offUserMs: number;
  onSysMs: number;
  offSysMs: number;
  /** Bytes in the journal after a journaled run (log + saved blocks + saved files). */
  journalBytes: number;
  overwritten?: { bytes: number; plainCopyMs: number; extraMs: number };
}

const GUEST = '/bench';

export function journalRows(rows: JournalRow[], p: Paths, tmp: string, runs: number): JournalResult[] {
  return rows.map((row) => journalRow(row, p, join(tmp, row.name), runs));
}

function journalRow(row: JournalRow, p: Paths, dir: string, runs: number): JournalResult {
  const step = (s: string): void => { process.stderr.write(`\r  ${row.name}: ${s}`.padEnd(70)); };
  const wasm = join(p.wasmDir, `${row.wasm}.wasm`);
  // One image per variant, each with its own directory (its path is in the image).
  const variants = (['work', 'zero'] as const).map((v) => {
    const template = join(dir, `${v}.template`);
    const data = join(dir, `${v}.data`);
    const image = join(dir, `${v}.image`);
    mkdirSync(template, { recursive: true });
    row.setup?.(template, v);
    reset(template, data);
    step(`image (${v})`);
    const args = v === 'work' ? row.args(GUEST) : row.zeroArgs(GUEST);
    const r = spawnSync(process.execPath, [p.stasisBin, 'launch', '--quiet', '--ckpt-dir', image, '--dir', `${data}::${GUEST}`, '--checkpoint-at-call', '1', wasm, ...args], { encoding: 'utf8' });
    if (r.status !== 75) throw new BenchFailure(`${row.name}: launch --checkpoint-at-call 1 exited ${r.status}: ${r.stderr}`);
    return { v, template, data, image };
  });
  const times = { on: { work: [] as number[], zero: [] as number[] }, off: { work: [] as number[], zero: [] as number[] } };
  const user = { on: { work: [] as number[], zero: [] as number[] }, off: { work: [] as number[], zero: [] as number[] } };
  const sys = { on: { work: [] as number[], zero: [] as number[] }, off: { work: [] as number[], zero: [] as number[] } };
  const seen = new Map<string, string>();
  let journalBytes = 0;
  for (let i = 0; i < runs; i++) {
    for (const mode of (i % 2 === 0 ? ['on', 'off'] : ['off', 'on']) as ('on' | 'off')[]) {
      for (const v of variants) {
        step(`run ${i + 1}/${runs}, journal ${mode}, ${v.v}`);
        reset(v.template, v.data);
        const image = `${v.image}.run`;
        rmSync(image, { recursive: true, force: true });
        cpSync(v.image, image, { recursive: true });
        const c0 = childrenCpuMs();
        const t0 = performance.now();
        const r = spawnSync(process.execPath, [p.stasisBin, 'restart', '--quiet', ...(mode === 'off' ? ['--no-rollback'] : []), image], { encoding: 'utf8' });
        const ms = performance.now() - t0;
        const c1 = childrenCpuMs();
        if (r.status !== 0) throw new BenchFailure(`${row.name}: restart (journal ${mode}) exited ${r.status}: ${r.stderr}`);
        const result = `${r.stdout}\n${listing(v.data)}`;
        const before = seen.get(v.v);
        if (before === undefined) seen.set(v.v, result);
        else if (before !== result) throw new BenchFailure(`${row.name}: output or files differ between runs (journal ${mode})`);
        times[mode][v.v].push(ms);
        user[mode][v.v].push(c1.user - c0.user);
        sys[mode][v.v].push(c1.sys - c0.sys);
        if (mode === 'on' && v.v === 'work') journalBytes = bytesBelow(join(image, 'journal'));
      }
    }
  }
  for (const v of variants) {
    rmSync(v.data, { recursive: true, force: true });
    rmSync(`${v.image}.run`, { recursive: true, force: true });
  }
  const net = (t: typeof times, m: 'on' | 'off'): number => Math.max(0, median(t[m].work) - median(t[m].zero));
  const onMs = net(times, 'on');
  const offMs = net(times, 'off');
  const [onUserMs, offUserMs, onSysMs, offSysMs] = [net(user, 'on'), net(user, 'off'), net(sys, 'on'), net(sys, 'off')];
  let overwritten: JournalResult['overwritten'];
  if (row.overwrites !== undefined) {
    step('plain copy');
    const src = join(variants[0]!.template, row.overwrites.file);
    const copies: number[] = [];
    for (let i = 0; i < runs; i++) {
      const dest = join(dir, 'copy');
      const t0 = performance.now();
      copyFileSync(src, dest);
      copies.push(performance.now() - t0);
      rmSync(dest);
    }
    overwritten = { bytes: row.overwrites.bytes, plainCopyMs: median(copies), extraMs: onMs - offMs };
  }
  rmSync(dir, { recursive: true, force: true });
  process.stderr.write('\r'.padEnd(70) + '\r');
  return {
    name: row.name, title: row.title, onMs, offMs, ratio: offMs > 0 ? onMs / offMs : NaN,
    onUserMs, offUserMs, onSysMs, offSysMs, journalBytes, ...(overwritten && { overwritten }),
  };
}

/** User and system CPU time (ms) of this process's children that have ended: /proc/self/stat's
 *  cutime and cstime, in clock ticks of 10 ms (NaN where there is no /proc). */
function childrenCpuMs(): { user: number; sys: number } {
  try {
    const stat = readFileSync('/proc/self/stat', 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { user: Number(f[13]) * 10, sys: Number(f[14]) * 10 };
  } catch {
    return { user: NaN, sys: NaN };
  }
}

/** The program's directory as the template has it (a copy, so the template is never changed). */
function reset(template: string, data: string): void {
  rmSync(data, { recursive: true, force: true });
  cpSync(template, data, { recursive: true });
}

/** Names and sizes below dir, sorted: what a run left. */
function listing(dir: string, prefix = ''): string {
  return readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1)).map((e) => {
    const p = join(dir, e.name);
    return e.isDirectory() ? `${prefix}${e.name}/\n${listing(p, `${prefix}${e.name}/`)}` : `${prefix}${e.name} ${statSync(p).size}\n`;
  }).join('');
}

function bytesBelow(dir: string): number {
  if (!existsSync(dir)) return 0;
  let n = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    n += e.isDirectory() ? bytesBelow(p) : statSync(p).size;
  }
  return n;
}

export function journalTable(results: JournalResult[], grid: (head: string[], rows: string[][]) => string[]): string {
  const ms = (x: number): string => `${x.toFixed(0)} ms`;
  const mib = (b: number): string => `${(b / 2 ** 20).toFixed(1)} MiB`;
  const x = (r: number): string => (Number.isFinite(r) ? `${r.toFixed(2)}x` : 'n/a');
  const out = ['', 'Undo journal: a program after a checkpoint, journaled (the default) vs --no-rollback (restart of a fresh copy, minus a restart given no work);',
    'wall-clock medians, and the restarts\' user and system CPU time (on / off); target on/off <= 1.05x, none above 1.10x', ''];
  const pair = (on: number, off: number): string => `${ms(on)} / ${ms(off)} = ${x(off > 0 ? on / off : NaN)}`;
  out.push(...grid(['row', 'journal on', '--no-rollback', 'on/off', 'user CPU', 'system CPU', 'journal size'], results.map((r) => [
    `${r.name}: ${r.title}`, ms(r.onMs), ms(r.offMs), x(r.ratio), pair(r.onUserMs, r.offUserMs), pair(r.onSysMs, r.offSysMs), mib(r.journalBytes),
  ])));
  for (const r of results) {
    if (r.overwritten === undefined) continue;
    const o = r.overwritten;
    out.push('', `${r.name}: ${mib(o.bytes)} written over; journal ${mib(r.journalBytes)} (${(r.journalBytes / o.bytes).toFixed(3)}x the bytes); ` +
      `its extra time ${ms(o.extraMs)} vs a plain copy of those bytes ${ms(o.plainCopyMs)} (${(o.extraMs / o.plainCopyMs).toFixed(2)}x)`);
  }
  return out.join('\n') + '\n';
}

/** The rows: the run group's writes and opens, a create/rename/unlink-heavy job, a file rewritten in place. */
export function defaultJournalRows(rewriteMib: number): JournalRow[] {
  const OPEN_FILES = 16;
  return [
    {
      name: 'journal-writes', title: '1,000,000 x 16-byte fd_write to a new file', wasm: 'writes',
      args: (g) => [`${g}/out.bin`, '1000000'], zeroArgs: (g) => [`${g}/out.bin`, '0'],
    },
    {
      name: 'journal-opens', title: '100,000 x path_open + fd_close', wasm: 'opens',
      args: (g) => [g, '100000', String(OPEN_FILES)], zeroArgs: (g) => [g, '0', String(OPEN_FILES)],
      setup: (h) => { for (let i = 0; i < OPEN_FILES; i++) writeFileSync(join(h, `f${String(i).padStart(2, '0')}`), `file ${i}\n`); },
    },
    {
      name: 'journal-churn', title: '20,000 steps: create, write, rename into place, unlink (+ mkdir/rmdir)', wasm: 'churn',
      args: (g) => [g, '20000'], zeroArgs: (g) => [g, '0'],
    },
    {
      name: 'journal-rewrite', title: `a ${rewriteMib} MiB file rewritten in place`, wasm: 'rewrite',
      args: (g) => [`${g}/db.bin`], zeroArgs: (g) => [`${g}/empty.bin`],
      setup: (h, v) => {
        writeFileSync(join(h, 'empty.bin'), '');
        if (v === 'zero') return;
        const chunk = Buffer.alloc(1 << 20, 0x5a);
        const fd = join(h, 'db.bin');
        writeFileSync(fd, '');
        for (let i = 0; i < rewriteMib; i++) writeFileSync(fd, chunk, { flag: 'a' });
      },
      overwrites: { file: 'db.bin', bytes: rewriteMib * 2 ** 20 },
    },
  ];
}
