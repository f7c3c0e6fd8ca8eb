// The checkpoint row groups of `npm run bench` (see bench/README.md):
//   ckpt-latency  checkpoint requests to a program in a pure compute loop, over the control socket
//   ckpt-1gib     1 GiB of touched memory: pause, checkpoint, incremental checkpoint, restart, RSS,
//                 against plain fs writes/reads of 1 GiB in the same run
//   ckpt-dbfile   a program holding a 1 GiB database file open: first checkpoint (copies the file)
//                 against a plain copy + fsync of it in the same run, and a second one (file unchanged)
//   ckpt-export   64 MiB of touched memory: `stasis export` and a restart from the export file,
//                 against a restart from the checkpoint directory in the same run
// All drive real `stasis launch` / `stasis restart` processes (bin/stasis.js) and talk to the
// launcher's control socket directly (newline-delimited JSON), so no `stasis checkpoint` process
// start-up is counted.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import {
  closeSync, constants, copyFileSync, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync,
  statfsSync, statSync, writeSync,
} from 'node:fs';
import * as net from 'node:net';
import { join } from 'node:path';

export class BenchFailure extends Error {}

export interface Paths {
  repoRoot: string;
  stasisBin: string;
  wasmDir: string;
  bigio: string;
}

// ---- small tools ----------------------------------------------------------------------------

export function median(xs: number[]): number {
  const s = [...xs].sort((p, q) => p - q);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Nearest-rank percentile (q in 0..1). */
export function percentile(xs: number[], q: number): number {
  const s = [...xs].sort((p, r) => p - r);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))]!;
}

export interface Dist { n: number; p50: number; p99: number; max: number }
export const dist = (xs: number[]): Dist => ({ n: xs.length, p50: percentile(xs, 0.5), p99: percentile(xs, 0.99), max: Math.max(...xs) });

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const GiB = 1024 ** 3;
export const fmtBytes = (b: number): string =>
  b >= GiB ? `${(b / GiB).toFixed(2)} GiB` : b >= 1 << 20 ? `${(b / (1 << 20)).toFixed(1)} MiB` : `${(b / 1024).toFixed(1)} KiB`;

/** A child process whose stdout is read line by line. */
class Child {
  readonly proc: ChildProcess;
  readonly exited: Promise<number | null>;
  private out = '';
  private err = '';
  /** stderr not matched by expectStderr yet. */
  private errSeen = '';
  private lines: string[] = [];
  private wake: (() => void) | null = null;

  constructor(readonly what: string, argv: string[], stdin: 'pipe' | 'ignore', env: NodeJS.ProcessEnv = process.env) {
    this.proc = spawn(process.execPath, argv, { stdio: [stdin, 'pipe', 'pipe'], env });
    this.proc.stdout!.setEncoding('utf8').on('data', (s: string) => {
      this.out += s;
      let nl: number;
      while ((nl = this.out.indexOf('\n')) >= 0) {
        this.lines.push(this.out.slice(0, nl));
        this.out = this.out.slice(nl + 1);
      }
      this.wake?.();
    });
    this.proc.stderr!.setEncoding('utf8').on('data', (s: string) => {
      this.err = (this.err + s).slice(-4000);
      this.errSeen += s;
      this.wake?.();
    });
    this.proc.stdin?.on('error', () => {}); // the reply to a write may be the child's exit
    this.exited = new Promise((resolve) => this.proc.once('exit', (code) => { this.wake?.(); resolve(code); }));
  }

  get pid(): number { return this.proc.pid!; }

  send(line: string): void { this.proc.stdin!.write(line + '\n'); }

  /** The stdout lines received and not read yet. */
  drain(): string[] { return this.lines.splice(0); }

  /** The next stdout line (fails if the child exits first, or after timeoutMs). */
  async line(timeoutMs: number): Promise<string> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const l = this.lines.shift();
      if (l !== undefined) return l;
      if (this.proc.exitCode !== null || this.proc.signalCode !== null) {
        throw new BenchFailure(`${this.what}: exited (${this.proc.exitCode ?? this.proc.signalCode}) before printing a line\n--- stderr ---\n${this.err}`);
      }
      const left = deadline - performance.now();
      if (left <= 0) throw new BenchFailure(`${this.what}: no output line within ${timeoutMs} ms\n--- stderr ---\n${this.err}`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.wake = () => { clearTimeout(t); r(); };
      });
      this.wake = null;
    }
  }

  async expectLine(re: RegExp, timeoutMs: number): Promise<string> {
    const l = await this.line(timeoutMs);
    if (!re.test(l)) throw new BenchFailure(`${this.what}: printed '${l}', expected ${re}\n--- stderr ---\n${this.err}`);
    return l;
  }

  /** Waits until stderr has a line matching re (fails if the child exits first, or after timeoutMs). */
  async expectStderr(re: RegExp, timeoutMs: number): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const m = re.exec(this.errSeen);
      if (m !== null) {
        this.errSeen = this.errSeen.slice(m.index + m[0].length);
        return;
      }
      if (this.proc.exitCode !== null || this.proc.signalCode !== null) throw new BenchFailure(`${this.what}: exited before printing ${re}\n--- stderr ---\n${this.err}`);
      const left = deadline - performance.now();
      if (left <= 0) throw new BenchFailure(`${this.what}: no ${re} on stderr within ${timeoutMs} ms\n--- stderr ---\n${this.err}`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.wake = () => { clearTimeout(t); r(); };
      });
      this.wake = null;
    }
  }

  /** When (performance.now()) stderr written from now on first matches re; null if it never does. */
  stderrAt(re: RegExp): Promise<number | null> {
    let seen = '';
    return new Promise((resolve) => {
      const on = (s: string): void => {
        seen += s;
        if (!re.test(seen)) return;
        this.proc.stderr!.off('data', on);
        resolve(performance.now());
      };
      this.proc.stderr!.on('data', on);
      this.proc.once('close', () => resolve(null));
    });
  }

  async expectExit(code: number, timeoutMs: number): Promise<void> {
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), timeoutMs);
    const got = await this.exited;
    clearTimeout(timer);
    if (got !== code) throw new BenchFailure(`${this.what}: exit ${got ?? this.proc.signalCode}, expected ${code}\n--- stderr ---\n${this.err}`);
  }

  /** Sends a signal (the program is still running). */
  signal(sig: NodeJS.Signals): void {
    this.proc.kill(sig);
  }

  kill(): void {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill('SIGKILL');
  }
}

type Reply = { ok: boolean; error?: string; [k: string]: unknown };

/** One connection to a launcher's control socket; requests go one at a time. */
class Control {
  private buf = '';
  private pending: { resolve: (line: string) => void; reject: (e: Error) => void } | null = null;

  private constructor(private readonly conn: net.Socket) {
    conn.setEncoding('utf8');
    conn.on('data', (s: string) => {
      this.buf += s;
      const nl = this.buf.indexOf('\n');
      if (nl >= 0 && this.pending) {
        const line = this.buf.slice(0, nl);
        this.buf = this.buf.slice(nl + 1);
        const p = this.pending;
        this.pending = null;
        p.resolve(line);
      }
    });
    conn.on('error', () => {});
    conn.on('close', () => this.pending?.reject(new BenchFailure('the control socket closed before replying')));
  }

  static connect(path: string): Promise<Control> {
    return new Promise((resolve, reject) => {
      const c = net.createConnection(path);
      c.once('connect', () => resolve(new Control(c)));
      c.once('error', (e) => reject(new BenchFailure(`control socket ${path}: ${e.message}`)));
    });
  }

  request(req: object, timeoutMs = 120_000): Promise<Reply> {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new BenchFailure(`no reply to ${JSON.stringify(req)} within ${timeoutMs} ms`)), timeoutMs);
      this.pending = {
        resolve: (line) => {
          clearTimeout(t);
          try {
            resolve(JSON.parse(line) as Reply);
          } catch {
            reject(new BenchFailure(`garbled reply: ${line}`));
          }
        },
        reject: (e) => { clearTimeout(t); reject(e); },
      };
      this.conn.write(JSON.stringify(req) + '\n');
    });
  }

  /** A checkpoint; fails unless the reply is ok. */
  async checkpoint(exit = false): Promise<Reply & { pauseMs: number; ms: number; generation: number }> {
    const r = await this.request(exit ? { cmd: 'checkpoint', exit: true } : { cmd: 'checkpoint' });
    if (!r.ok || typeof r.pauseMs !== 'number' || typeof r.ms !== 'number') {
      throw new BenchFailure(`checkpoint failed: ${JSON.stringify(r)}`);
    }
    return r as Reply & { pauseMs: number; ms: number; generation: number };
  }

  close(): void { this.conn.destroy(); }
}

/** Waits until the launcher reports its capture buffer ready; returns how long that took. */
async function captureReady(ctl: Control): Promise<number> {
  const t0 = performance.now();
  for (;;) {
    const r = await ctl.request({ cmd: 'status' });
    if (!r.ok || typeof r.captureReady !== 'boolean') throw new BenchFailure(`status failed: ${JSON.stringify(r)}`);
    if (r.captureReady) return performance.now() - t0;
    if (performance.now() - t0 > 60_000) throw new BenchFailure('the capture buffer was not ready after 60 s');
    await sleep(20);
  }
}

/** The control socket of a launched program, as `stasis status NAME --json` reports it. */
async function socketOf(p: Paths, name: string): Promise<string> {
  const deadline = performance.now() + 30_000;
  for (;;) {
    const r = spawnSync(process.execPath, [p.stasisBin, 'status', name, '--json'], { encoding: 'utf8' });
    if (r.status === 0) {
      const s = (JSON.parse(r.stdout) as { socket?: unknown }).socket;
      if (typeof s === 'string') return s;
      throw new BenchFailure(`stasis status ${name} --json has no socket field: ${r.stdout}`);
    }
    if (performance.now() > deadline) throw new BenchFailure(`stasis status ${name}: exit ${r.status}: ${r.stderr}`);
    await sleep(50);
  }
}

function launchArgs(p: Paths, name: string, ckptDir: string, wasm: string, args: string[], flags: string[] = []): string[] {
  return [p.stasisBin, 'launch', '--quiet', '--name', name, '--ckpt-dir', ckptDir, ...flags, wasm, ...args];
}

/** VmHWM (peak resident set) of a live process, in bytes. */
function peakRss(pid: number): number {
  const m = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new BenchFailure(`no VmHWM in /proc/${pid}/status`);
  return Number(m[1]) * 1024;
}

/** path -> size of every file under dir. */
function sizes(dir: string, into = new Map<string, number>()): Map<string, number> {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) sizes(p, into);
    else if (e.isFile()) into.set(p, statSync(p).size);
  }
  return into;
}

/** Bytes of files that are new (or changed size) in `after` compared with `before`. */
function added(before: Map<string, number>, after: Map<string, number>): number {
  let n = 0;
  for (const [p, s] of after) if (before.get(p) !== s) n += s;
  return n;
}

// ---- ckpt-latency -------------------------------------------------------------------------------

export interface LatencyResult {
  requests: number;
  warmup: number;
  /** Request -> captured, if the launcher's reply carries it (field latencyMs). */
  latencyMs: Dist | null;
  pauseMs: Dist;
  ms: Dist;
  /** Request written to the socket -> reply read, in the bench (ms plus socket and JSON). */
  roundTripMs: Dist;
  imageBytes: Dist;
  runMs: number;
}

export async function checkpointLatency(p: Paths, tmp: string, requests: number): Promise<LatencyResult> {
  const name = `bench-spin-${process.pid}`;
  const ckptDir = join(tmp, 'spin.ckpt');
  const child = new Child('spin under stasis launch', launchArgs(p, name, ckptDir, join(p.wasmDir, 'spin.wasm'), []), 'ignore');
  try {
    await child.expectLine(/^spin started$/, 300_000); // the first launch of a module instruments it
    const ctl = await Control.connect(await socketOf(p, name));
    const warmup = 3; // the first image also stores the module; not counted
    const lat: number[] = [], pause: number[] = [], ms: number[] = [], rtt: number[] = [], bytes: number[] = [];
    let x = 0x2545F491; // xorshift32: gaps of 5..44 ms, the same every run
    let before = existsSync(ckptDir) ? sizes(ckptDir) : new Map<string, number>();
    const t0 = performance.now();
    for (let i = 0; i < warmup + requests; i++) {
      x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
      await sleep(5 + ((x >>> 0) % 40));
      const t = performance.now();
      const r = await ctl.checkpoint();
      const round = performance.now() - t;
      const after = sizes(ckptDir);
      if (i >= warmup) {
        pause.push(r.pauseMs);
        ms.push(r.ms);
        rtt.push(round);
        bytes.push(added(before, after));
        if (typeof r.latencyMs === 'number') lat.push(r.latencyMs);
      }
      before = after;
      process.stderr.write(`\r  ckpt-latency: ${i + 1}/${warmup + requests}${i + 1 === warmup + requests ? '\n' : ''}`);
    }
    const runMs = performance.now() - t0;
    await ctl.request({ cmd: 'kill' });
    ctl.close();
    await child.expectExit(137, 10_000);
    return {
      requests, warmup, latencyMs: lat.length === requests ? dist(lat) : null,
      pauseMs: dist(pause), ms: dist(ms), roundTripMs: dist(rtt), imageBytes: dist(bytes), runMs,
    };
  } finally {
    child.kill();
    rmSync(ckptDir, { recursive: true, force: true });
  }
}

// ---- ckpt-1gib ----------------------------------------------------------------------------------

export interface BigRound {
  plainWriteMs: number;
  plainReadMs: number;
  fillMs: number;
  /** After the fill, until the launcher's capture buffer was ready (status captureReady). */
  bufferWaitMs: number;
  first: { pauseMs: number; ms: number; bytes: number };
  dirty: { pauseMs: number; ms: number; bytes: number };
  scattered: { pauseMs: number; ms: number; bytes: number };
  /** SIGTERM after those checkpoints (the program dirtied 1 % more since): until the launcher
   *  reports the image durable (ms), and until its exit 75 (exitMs: its requeue included). */
  term: { ms: number; exitMs: number; bytes: number };
  /** Launcher VmHWM after the first, second (1 % dirty) and third (scattered) checkpoint. */
  launcherPeakRss: [number, number, number];
  /** `stasis restart` spawned -> the program answered "pong" (it runs again). */
  restartMs: number;
  /** The same for the 1 MiB version of the program (start-up of restart). */
  restartSmallMs: number;
  restartPeakRss: number;
}

export interface BigResult {
  mib: number;
  rounds: BigRound[];
}

/** Why the 1 GiB group cannot run here, or null. */
export function bigPreflight(tmp: string, mib: number): string | null {
  const need = 4 * mib * 1024 * 1024 + GiB; // plain file + images of ~2x the memory, spare
  const fs = statfsSync(tmp);
  const free = fs.bavail * fs.bsize;
  if (free < need) return `only ${fmtBytes(free)} free in ${tmp}, needs ${fmtBytes(need)} (set TMPDIR elsewhere)`;
  const m = /^MemAvailable:\s+(\d+) kB/m.exec(readFileSync('/proc/meminfo', 'utf8'));
  const avail = m ? Number(m[1]) * 1024 : Infinity;
  const needMem = 3 * mib * 1024 * 1024 + GiB / 2;
  if (avail < needMem) return `only ${fmtBytes(avail)} of memory available, needs ${fmtBytes(needMem)}`;
  return null;
}

/** Launches bigmem MIB, waits for its fill; returns it with its control connection. */
async function launchBig(p: Paths, name: string, ckptDir: string, mib: number, env?: NodeJS.ProcessEnv): Promise<{ child: Child; ctl: Control; fillMs: number }> {
  const t0 = performance.now();
  const child = new Child(`bigmem ${mib} under stasis launch`, launchArgs(p, name, ckptDir, join(p.wasmDir, 'bigmem.wasm'), [String(mib)]), 'pipe', env);
  try {
    await child.expectLine(new RegExp(`^filled mib=${mib}$`), 300_000);
    const fillMs = performance.now() - t0;
    const ctl = await Control.connect(await socketOf(p, name));
    return { child, ctl, fillMs };
  } catch (e) {
    child.kill();
    throw e;
  }
}

/** `stasis restart CKPT_DIR`: time to the program's answer to "ping"; checks its memory sum. */
async function restartBig(p: Paths, ckptDir: string, mib: number, sum: string, extra: string[] = []): Promise<{ ms: number; peakRss: number }> {
  const t0 = performance.now();
  const child = new Child(`stasis restart of bigmem ${mib}`, [p.stasisBin, 'restart', '--quiet', ...extra, ckptDir], 'pipe');
  try {
    child.send('ping');
    await child.expectLine(/^pong$/, 300_000);
    const ms = performance.now() - t0;
    const rss = peakRss(child.pid);
    child.send('sum');
    const got = await child.expectLine(/^sum=/, 120_000);
    if (got !== sum) throw new BenchFailure(`bigmem ${mib}: memory after restart differs: ${got}, before the checkpoint ${sum}`);
    child.send('quit');
    await child.expectExit(0, 60_000);
    return { ms, peakRss: rss };
  } finally {
    child.kill();
  }
}

async function bigRound(p: Paths, tmp: string, mib: number, round: number): Promise<BigRound> {
  const step = (s: string): void => { process.stderr.write(`\r  ckpt-1gib: round ${round + 1}: ${s}`.padEnd(60)); };
  // Plain fs baseline, in a fresh process (fresh memory).
  step('plain write/read');
  const io = spawnSync(process.execPath, [p.bigio, join(tmp, 'plain.bin'), String(mib)], { encoding: 'utf8', timeout: 600_000 });
  if (io.status !== 0) throw new BenchFailure(`bigio: exit ${io.status}: ${io.stderr}`);
  const { writeMs: plainWriteMs, readMs: plainReadMs } = JSON.parse(io.stdout) as { writeMs: number; readMs: number };

  const ckptDir = join(tmp, `big${round}.ckpt`);
  const name = `bench-big-${process.pid}-${round}`;
  step('launch + fill');
  // As a Slurm job (SLURM_JOB_ID; there is no cluster: its requeue after the stop fails, and
  // says so): its warning signal checkpoints and the program goes on, as before a time limit.
  const slurmEnv: NodeJS.ProcessEnv = { ...process.env, SLURM_JOB_ID: '1' };
  for (const k of Object.keys(slurmEnv)) if (k.startsWith('SLURM_') && k !== 'SLURM_JOB_ID') delete slurmEnv[k];
  const { child, ctl, fillMs } = await launchBig(p, name, ckptDir, mib, slurmEnv);
  let sum: string;
  const res: Partial<BigRound> = { plainWriteMs, plainReadMs, fillMs };
  try {
    let before = new Map<string, number>();
    const ckpt = async (exit = false): Promise<{ pauseMs: number; ms: number; bytes: number }> => {
      const r = await ctl.checkpoint(exit);
      const after = sizes(ckptDir);
      const bytes = added(before, after);
      before = after;
      return { pauseMs: r.pauseMs, ms: r.ms, bytes };
    };
    // The launcher prepares (touches) a buffer of the memory's size for captures after the
    // memory grows; a checkpoint asked before it is ready waits for it (reported on its own).
    step('capture buffer');
    res.bufferWaitMs = await captureReady(ctl);
    step('first checkpoint');
    res.first = await ckpt();
    const rss1 = peakRss(child.pid);
    step('1 % dirty, checkpoint');
    child.send('dirty');
    await child.expectLine(/^dirtied bytes=\d+$/, 60_000);
    res.dirty = await ckpt();
    const rss2 = peakRss(child.pid);
    step('1 % scattered, checkpoint');
    child.send('scatter');
    await child.expectLine(/^scattered bytes=\d+$/, 60_000);
    res.scattered = await ckpt();
    res.launcherPeakRss = [rss1, rss2, peakRss(child.pid)];
    // A scheduler's notice: its warning (SIGUSR1, a checkpoint; the program goes on), 1 % more
    // rewritten, then SIGTERM; the launcher checkpoints what changed and exits 75 once durable.
    step('Slurm warning (SIGUSR1)');
    child.signal('SIGUSR1');
    await child.expectStderr(/^stasis: checkpointed to \S+ on SIGUSR1 .*$/m, 300_000);
    before = sizes(ckptDir);
    child.send('dirty');
    await child.expectLine(/^dirtied bytes=\d+$/, 60_000);
    child.send('sum');
    sum = await child.expectLine(/^sum=[0-9a-f]{16}$/, 60_000);
    step('SIGTERM');
    ctl.close();
    const durable = child.stderrAt(/^stasis: checkpointed to \S+ on SIGTERM /m);
    const t0 = performance.now();
    child.signal('SIGTERM');
    await child.expectExit(75, 120_000);
    const exitMs = performance.now() - t0;
    const at = await durable;
    if (at === null) throw new BenchFailure('bigmem: no checkpoint reported on SIGTERM');
    const after = sizes(ckptDir);
    res.term = { ms: at - t0, exitMs, bytes: added(before, after) };
  } finally {
    child.kill();
  }
  step('restart');
  const r = await restartBig(p, ckptDir, mib, sum);
  res.restartMs = r.ms;
  res.restartPeakRss = r.peakRss;
  rmSync(ckptDir, { recursive: true, force: true });

  // Start-up of restart: the same program with 1 MiB, checkpointed and restarted the same way.
  step('restart of the 1 MiB version');
  const smallDir = join(tmp, `small${round}.ckpt`);
  const small = await launchBig(p, `${name}-small`, smallDir, 1);
  let smallSum: string;
  try {
    small.child.send('sum');
    smallSum = await small.child.expectLine(/^sum=/, 60_000);
    await small.ctl.checkpoint(true);
    small.ctl.close();
    await small.child.expectExit(75, 60_000);
  } finally {
    small.child.kill();
  }
  res.restartSmallMs = (await restartBig(p, smallDir, 1, smallSum)).ms;
  rmSync(smallDir, { recursive: true, force: true });
  process.stderr.write(`\r  ckpt-1gib: round ${round + 1} done`.padEnd(60) + '\n');
  return res as BigRound;
}

export async function bigMemory(p: Paths, tmp: string, mib: number, rounds: number): Promise<BigResult> {
  const out: BigRound[] = [];
  for (let i = 0; i < rounds; i++) out.push(await bigRound(p, tmp, mib, i));
  return { mib, rounds: out };
}

// ---- ckpt-export --------------------------------------------------------------------------------

export interface ExportBenchResult {
  mib: number;
  /** Per round: `stasis restart CKPT_DIR` spawned -> "pong". */
  restartDirMs: number[];
  /** `stasis export CKPT_DIR -o FILE`, process spawned -> exited (checks, writes, fsyncs). */
  exportMs: number[];
  /** `stasis restart FILE` spawned -> "pong" (the whole file checked first, then restored from it). */
  restartFileMs: number[];
  fileBytes: number;
}

/** bigmem MIB checkpointed once; then, `rounds` times: restart from the directory, export, restart from the file. */
export async function exportBench(p: Paths, tmp: string, mib: number, rounds: number): Promise<ExportBenchResult> {
  const ckptDir = join(tmp, 'export.ckpt');
  const file = join(tmp, 'export.tar');
  const { child, ctl } = await launchBig(p, `bench-export-${process.pid}`, ckptDir, mib);
  let sum: string;
  try {
    child.send('sum');
    sum = await child.expectLine(/^sum=[0-9a-f]{16}$/, 60_000);
    await ctl.checkpoint(true);
    ctl.close();
    await child.expectExit(75, 60_000);
  } finally {
    child.kill();
  }
  const res: ExportBenchResult = { mib, restartDirMs: [], exportMs: [], restartFileMs: [], fileBytes: 0 };
  try {
    // Both restarts after the export (whose writes could still slow the one right after it).
    for (let i = 0; i < rounds; i++) {
      rmSync(file, { force: true });
      const t0 = performance.now();
      const ex = spawnSync(process.execPath, [p.stasisBin, 'export', ckptDir, '-o', file], { encoding: 'utf8', timeout: 600_000 });
      res.exportMs.push(performance.now() - t0);
      if (ex.status !== 0) throw new BenchFailure(`stasis export: exit ${ex.status}: ${ex.stderr}`);
      res.fileBytes = statSync(file).size;
      res.restartDirMs.push((await restartBig(p, ckptDir, mib, sum)).ms);
      const newDir = join(tmp, `export-restart${i}.ckpt`);
      res.restartFileMs.push((await restartBig(p, file, mib, sum, ['--ckpt-dir', newDir])).ms);
      rmSync(newDir, { recursive: true, force: true });
    }
  } finally {
    rmSync(ckptDir, { recursive: true, force: true });
    rmSync(file, { force: true });
  }
  return res;
}

// ---- ckpt-dbfile --------------------------------------------------------------------------------

export interface DbCheckpoint {
  pauseMs: number;
  ms: number;
  /** The reply's bytesWritten. */
  bytesWritten: number;
  /** Bytes of files new in the checkpoint directory (a cross-check). */
  dirBytes: number;
  /** Longest of the program's 10 ms sleeps around this checkpoint, as it measured it (null: none > 20 ms). */
  stallMs: number | null;
}

export interface DbResult {
  mib: number;
  /** copyFileSync(FICLONE) of the file + fsync of the copy, in the bench process. */
  plainCopyMs: number;
  first: DbCheckpoint;
  second: DbCheckpoint;
}

/** Why the database-file group cannot run here, or null. */
export function dbPreflight(tmp: string, mib: number): string | null {
  const need = 2 * mib * 1024 * 1024 + GiB; // the file and one copy of it (plain, then saved), spare
  const fs = statfsSync(tmp);
  const free = fs.bavail * fs.bsize;
  return free < need ? `only ${fmtBytes(free)} free in ${tmp}, needs ${fmtBytes(need)} (set TMPDIR elsewhere)` : null;
}

/** Writes MIB MiB of random bytes to path (16 MiB writes, each piece fresh), fsynced. */
function makeDbFile(path: string, mib: number): void {
  const piece = Buffer.allocUnsafe(16 << 20);
  const fd = openSync(path, 'w');
  try {
    for (let left = mib << 20; left > 0;) {
      const n = Math.min(piece.length, left);
      randomFillSync(piece, 0, n);
      for (let w = 0; w < n;) w += writeSync(fd, piece, w, n - w);
      left -= n;
    }
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Idle time before the plain copy and before the first checkpoint (see dbFile). */
const IDLE_MS = 3000;

export async function dbFile(p: Paths, tmp: string, mib: number): Promise<DbResult> {
  const step = (s: string): void => { process.stderr.write(`\r  ckpt-dbfile: ${s}`.padEnd(60)); };
  const dir = join(tmp, 'dbfile');
  const ckptDir = join(tmp, 'dbfile.ckpt');
  const file = join(dir, 'db.bin');
  let child: Child | null = null;
  try {
    mkdirSync(dir, { recursive: true });
    step(`write ${mib} MiB`);
    makeDbFile(file, mib);
    // Plain baseline: the same kernel copy Stasis asks for (copy_file_range, or a reflink where the
    // file system has them), then fsync of the copy. Both read the file from the page cache, and both
    // start after IDLE_MS without a removal: on the bench VM (KVM, balloon free page reporting) memory
    // freed goes back to the host within ~1 s, and a 1 GiB copy into page cache freed just before takes
    // ~0.9 s, into memory faulted back in from the host ~2.2 s.
    step('idle, then plain copy + fsync');
    await sleep(IDLE_MS);
    const copy = join(dir, 'copy.bin');
    const t0 = performance.now();
    copyFileSync(file, copy, constants.COPYFILE_FICLONE);
    const fd = openSync(copy, 'r+');
    fsyncSync(fd);
    closeSync(fd);
    const plainCopyMs = performance.now() - t0;
    rmSync(copy);

    step('launch');
    const name = `bench-db-${process.pid}`;
    child = new Child('dbfile under stasis launch',
      launchArgs(p, name, ckptDir, join(p.wasmDir, 'dbfile.wasm'), ['/data/db.bin'], ['--dir', `${dir}::/data`]), 'ignore');
    await child.expectLine(new RegExp(`^ready size=${mib << 20}$`), 300_000); // the first launch instruments
    const readyAt = performance.now();
    const ctl = await Control.connect(await socketOf(p, name));
    // A saved copy is reused only if the file's ctime is > 100 ms older than the copy (src/files/capture.ts):
    // the program's write ages IDLE_MS (>= 200 ms), as a database idle between checkpoints would.
    step('idle');
    await sleep(Math.max(0, readyAt + IDLE_MS - performance.now()));
    let before = existsSync(ckptDir) ? sizes(ckptDir) : new Map<string, number>();
    const ckpt = async (): Promise<DbCheckpoint> => {
      child!.drain();
      const r = await ctl.checkpoint();
      await sleep(100); // the program prints its stall once it runs again
      const stalls = child!.drain().map((l) => /^stall ms=(\d+)$/.exec(l)).filter((m) => m !== null).map((m) => Number(m[1]));
      const after = sizes(ckptDir);
      const dirBytes = added(before, after);
      before = after;
      if (typeof r['bytesWritten'] !== 'number') throw new BenchFailure(`checkpoint reply has no bytesWritten: ${JSON.stringify(r)}`);
      return { pauseMs: r.pauseMs, ms: r.ms, bytesWritten: r['bytesWritten'], dirBytes, stallMs: stalls.length > 0 ? Math.max(...stalls) : null };
    };
    step('first checkpoint');
    const first = await ckpt();
    if (first.bytesWritten < mib << 20) {
      throw new BenchFailure(`ckpt-dbfile: the first checkpoint wrote ${first.bytesWritten} bytes: the ${mib} MiB open file was not saved with it`);
    }
    step('second checkpoint');
    const second = await ckpt();
    await ctl.request({ cmd: 'kill' });
    ctl.close();
    await child.expectExit(137, 10_000);
    process.stderr.write('\r  ckpt-dbfile: done'.padEnd(60) + '\n');
    return { mib, plainCopyMs, first, second };
  } finally {
    child?.kill();
    rmSync(dir, { recursive: true, force: true });
    rmSync(ckptDir, { recursive: true, force: true });
  }
}
