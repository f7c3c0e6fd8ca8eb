// The Slurm group of `npm run bench` (bench/README.md): a batch job's requeue round trip on a
// local one-node Slurm (test/slurm-cluster.ts starts it): SIGTERM to the job (as its time limit
// sends it, with no requeue by Slurm) -> the job stopped and requeued by itself -> started again
// by Slurm -> its program running again. Measured for `stasis launch --resume` of a 64 MiB
// program, and, in the same run, for a plain shell job that saves nothing (Slurm's own share).
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { slurmMissing, startCluster, type Cluster } from '../test/slurm-cluster.js';
import { BenchFailure, median, type Paths } from './ckpt.js';

export const SLURM_REQUEUE = 'slurm-requeue';
const MIB = 64;
const ROUNDS = 3;
const TICK_MS = 10;

/** One requeue round trip, in ms, from the bench's clock and the job's own stamps. */
export interface RoundTrip {
  /** `scancel --batch --signal=TERM` sent -> the job has requeued itself and is exiting. */
  stopMs: number;
  /** -> its script runs again (Slurm: requeue delay, scheduling, the job's start on the node). */
  slurmMs: number;
  /** -> its program prints again (for Stasis: Node's start, the image read, the program restored). */
  restartMs: number;
  /** The launcher's own figure: SIGTERM received -> image durable (null for the plain job). */
  checkpointMs: number | null;
  /** Script started -> the launcher says the program runs (null for the plain job). */
  launcherMs: number | null;
}

export interface SlurmResult {
  mib: number;
  /** `sbatch` -> the job's script running, for each of the two jobs' first start. */
  submitMs: number[];
  plain: RoundTrip[];
  stasis: RoundTrip[];
  /** The cluster's settings that set Slurm's share. */
  settings: string;
}

/** Why the group cannot run here (Slurm missing, not root), or null. */
export function slurmPreflight(): string | null {
  return slurmMissing();
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const text = (f: string): string => (existsSync(f) ? readFileSync(f, 'utf8') : '');
const size = (f: string): number => (existsSync(f) ? statSync(f).size : 0);

/** The time (Date.now()) at which `cond` was first seen true, polling every 2 ms. */
async function when(what: string, cond: () => boolean, limitMs = 300_000): Promise<number> {
  const deadline = Date.now() + limitMs;
  for (;;) {
    if (cond()) return Date.now();
    if (Date.now() > deadline) throw new BenchFailure(`${SLURM_REQUEUE}: timed out waiting for ${what}`);
    await sleep(2);
  }
}

interface Job {
  name: string;
  script: string;
  /** Lines on the job's stderr that say it requeued itself. */
  requeued: RegExp;
  /** Lines on its stderr that say its program runs (the launcher's), if any. */
  running?: RegExp;
}

async function roundTrips(c: Cluster, dir: string, job: Job): Promise<{ submitMs: number; rounds: RoundTrip[] }> {
  const out = join(dir, `${job.name}.out`);
  const err = join(dir, `${job.name}.err`);
  const stamps = join(dir, `${job.name}.starts`);
  const starts = (): number[] => text(stamps).split('\n').filter((l) => l !== '').map(Number);
  const count = (re: RegExp | undefined): number => (re === undefined ? 0 : text(err).match(re)?.length ?? 0);
  const requeues = (): number => count(job.requeued);
  const script = join(dir, `${job.name}.sh`);
  // The script's first act: its start time (ms since the epoch, as Date.now()).
  writeFileSync(script, `#!/bin/bash\ndate +%s%3N >> '${stamps}'\n${job.script}\n`, { mode: 0o755 });
  const t0 = Date.now();
  const id = c.run('sbatch', ['--parsable', '--open-mode=append', `--output=${out}`, `--error=${err}`, `--chdir=${dir}`, script]).trim();
  const rounds: RoundTrip[] = [];
  try {
    await when(`${job.name} to start`, () => starts().length === 1);
    const submitMs = starts()[0]! - t0;
    for (let r = 0; r < ROUNDS; r++) {
      // Running: its program has printed since this attempt started.
      const printed = size(out);
      await when(`${job.name} to run`, () => size(out) > printed && /tick \d+\n$/.test(text(out)));
      const [n, q, running] = [starts().length, requeues(), count(job.running)];
      const tSig = Date.now();
      c.run('scancel', ['--batch', '--signal=TERM', id]);
      const tStop = await when(`${job.name} to stop and requeue itself`, () => requeues() > q);
      const stopped = size(out);
      await when(`${job.name} to start again`, () => starts().length > n);
      const tStart = starts()[n]!;
      // Whichever comes first is seen first: both are polled together.
      let tLauncher: number | null = null;
      const tRun = await when(`${job.name}'s program to run again`, () => {
        if (job.running !== undefined && tLauncher === null && count(job.running) > running) tLauncher = Date.now();
        return size(out) > stopped;
      });
      if (job.running !== undefined && tLauncher === null) tLauncher = await when(`${job.name}'s launcher to say it runs`, () => count(job.running) > running);
      const ckpt = [...text(err).matchAll(/^stasis: checkpointed to \S+ on SIGTERM in (\d+\.\d+) s/gm)][r];
      rounds.push({ stopMs: tStop - tSig, slurmMs: tStart - tStop, restartMs: tRun - tStart, checkpointMs: ckpt ? Number(ckpt[1]) * 1000 : null,
        launcherMs: tLauncher === null ? null : (tLauncher as number) - tStart });
      process.stderr.write(`\r  ${SLURM_REQUEUE} ${job.name}: ${r + 1}/${ROUNDS}${r + 1 === ROUNDS ? '\n' : ''}`);
    }
    return { submitMs, rounds };
  } catch (e) {
    throw e instanceof BenchFailure ? new BenchFailure(`${e.message}\n--- ${job.name}'s stderr ---\n${text(err).slice(-3000)}`) : e;
  } finally {
    try { c.run('scancel', [id]); } catch { /* ended */ }
  }
}

/** The group's result, or why it was skipped (the cluster could not be started here). */
export async function slurmRequeue(p: Paths, tmp: string): Promise<SlurmResult | string> {
  let c: Cluster;
  try {
    c = await startCluster();
  } catch (e) {
    return `Slurm could not be started here: ${(e as Error).message.split('\n')[0]}`;
  }
  const dir = join(tmp, 'slurm');
  try {
    mkdirSync(dir, { recursive: true });
    const settings = 'AuthInfo cred_expire=5 s (a requeued job may start again only after it), SchedulerParameters sched_interval=2 s';
    // A shell job that saves nothing, requeued the same way (scontrol requeue of itself on SIGTERM).
    const plain = await roundTrips(c, dir, {
      name: 'plain',
      script: "trap 'scontrol requeue \"$SLURM_JOB_ID\"; echo requeued >&2; exit 0' TERM\n" +
        `i=0; while :; do sleep ${TICK_MS / 1000}; echo "tick $i"; i=$((i+1)); done`,
      requeued: /^requeued$/gm,
    });
    const ticker = join(p.wasmDir, 'ticker.wasm');
    const stasis = await roundTrips(c, dir, {
      name: 'stasis',
      script: `exec '${process.execPath}' '${p.stasisBin}' launch --resume --ckpt-dir '${join(dir, 'ckpt')}' '${ticker}' ${MIB} ${TICK_MS} 100000000`,
      requeued: /^stasis: job \d+ requeued /gm,
      running: /^stasis: ticker running \(pid /gm,
    });
    return { mib: MIB, submitMs: [plain.submitMs, stasis.submitMs], plain: plain.rounds, stasis: stasis.rounds, settings };
  } finally {
    await c.stop();
  }
}

export function slurmTable(r: SlurmResult): string {
  const ms = (v: number | null): string => (v === null ? '-' : `${Math.round(v).toLocaleString('en-US')} ms`);
  const med = (xs: RoundTrip[], f: (x: RoundTrip) => number | null): number | null => {
    const v = xs.map(f).filter((x): x is number => x !== null);
    return v.length === 0 ? null : median(v);
  };
  const total = (x: RoundTrip): number => x.stopMs + x.slurmMs + x.restartMs;
  const row = (what: string, f: (x: RoundTrip) => number | null): string => `| ${what} | ${ms(med(r.plain, f))} | ${ms(med(r.stasis, f))} |`;
  const own = (x: RoundTrip): number => x.stopMs + x.restartMs;
  const out = [
    '',
    `${SLURM_REQUEUE}: a job's requeue round trip on a local one-node Slurm (SIGTERM as at a time limit; the job requeues itself), median of ${ROUNDS} rounds`,
    `| step | plain shell job (saves nothing) | stasis launch --resume, ${r.mib} MiB program |`,
    '| --- | ---: | ---: |',
    row('SIGTERM sent (scancel --batch) -> job requeued, exiting', (x) => x.stopMs),
    row('  of which the checkpoint (the launcher\'s figure)', (x) => x.checkpointMs),
    row('-> job script started again (Slurm: requeue delay, scheduling, start)', (x) => x.slurmMs),
    row('-> the program prints again', (x) => x.restartMs),
    row('  of which to the launcher\'s "running" line (then the memory is read, checked, restored)', (x) => x.launcherMs),
    row('round trip', total),
    '',
    `Stasis's share (its stop and restart, less the plain job's): ${ms(med(r.stasis, own)! - med(r.plain, own)!)}; ` +
      `Slurm's (exit -> script started again): ${ms(med(r.stasis, (x) => x.slurmMs))}.`,
    `Checkpoints on SIGTERM, by round: ${r.stasis.map((x) => ms(x.checkpointMs)).join(', ')} (the first one writes the whole memory).`,
    `Slurm's own latency, sbatch -> script running: ${r.submitMs.map((x) => ms(x)).join(', ')} (plain, stasis job).`,
    `Cluster: ${r.settings}; with the default cred_expire (120 s) a requeued job waits two minutes before it may start again.`,
  ];
  return out.join('\n') + '\n';
}
