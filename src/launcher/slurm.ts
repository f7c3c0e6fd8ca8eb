// Running as a Slurm job (SLURM_JOB_ID is set): the scheduler's warning signal checkpoints, and
// a job stopped after a checkpoint puts itself back in the queue, so that its next attempt
// (`launch --resume`) continues from the image instead of Slurm recording a failure. Off
// outside Slurm. docs/slurm.md has the job scripts.
import { nodeChildProcess } from '../util/builtins.js';

export interface SlurmJob {
  /** How scontrol names the job: SLURM_JOB_ID, or ARRAY_TASK for a task of a job array (the
   *  first task's own ID is the array's, which scontrol takes for every task of it). */
  jobId: string;
  /** SLURM_RESTART_COUNT: how many times the job had been requeued when this attempt began. */
  restarts: number;
}

/** The job this process runs in, or null outside Slurm. */
export function slurmJob(env: NodeJS.ProcessEnv = process.env): SlurmJob | null {
  const id = env['SLURM_JOB_ID'];
  if (id === undefined || !/^\d+$/.test(id)) return null;
  const [array, task] = [env['SLURM_ARRAY_JOB_ID'], env['SLURM_ARRAY_TASK_ID']];
  const jobId = array !== undefined && task !== undefined && /^\d+$/.test(array) && /^\d+$/.test(task) ? `${array}_${task}` : id;
  const restarts = Number(env['SLURM_RESTART_COUNT'] ?? 0);
  return { jobId, restarts: Number.isInteger(restarts) && restarts >= 0 ? restarts : 0 };
}

/** Signals `--signal=[B:]SIG@SECONDS` may send ahead of the end: a checkpoint, and the program
 *  goes on (SIGTERM, the end itself, checkpoints and stops as everywhere). */
export const WARNING_SIGNALS: readonly NodeJS.Signals[] = ['SIGUSR1', 'SIGUSR2'];

/** What `scontrol show job -o ID` says of the job: its KEY=VALUE fields. */
export type JobFields = Record<string, string>;

export function parseJobFields(line: string): JobFields {
  const out: JobFields = {};
  for (const m of line.matchAll(/(?:^|\s)([A-Za-z:/]+)=(\S*)/g)) out[m[1]!] = m[2]!;
  return out;
}

/**
 * Whether a job that stopped after a checkpoint should requeue itself, and why (for its log).
 * Slurm requeues on its own after `scontrol requeue` or a preemption in REQUEUE mode (its
 * restart count has gone up already), and, where the admin set RequeueExit=75, when the job
 * exits 75. A job cancelled by its user, or submitted with --no-requeue, stays ended.
 */
export function requeueDecision(job: SlurmJob, fields: JobFields, requeueExit: string): { requeue: boolean; why: string } {
  if (Number(fields['Restarts'] ?? 0) > job.restarts) return { requeue: false, why: 'Slurm has requeued it already' };
  if (fields['Requeue'] === '0') return { requeue: false, why: 'it was submitted with --no-requeue' };
  const state = fields['JobState'] ?? '';
  if (state === 'CANCELLED' || (state === 'COMPLETING' && fields['Reason'] !== 'TimeLimit' && !timedOut(fields))) {
    return { requeue: false, why: 'it was cancelled' };
  }
  if (exitCodes(requeueExit).includes(75)) return { requeue: false, why: 'Slurm requeues it on exit 75 (RequeueExit)' };
  return { requeue: true, why: '' };
}

function timedOut(fields: JobFields): boolean {
  const limit = seconds(fields['TimeLimit']);
  const run = seconds(fields['RunTime']);
  return limit !== null && run !== null && run >= limit;
}

/** Slurm's [DAYS-]HH:MM:SS (or MM:SS) in seconds; null for UNLIMITED and the like. */
function seconds(v: string | undefined): number | null {
  const m = /^(?:(\d+)-)?(?:(\d+):)?(\d+):(\d+)$/.exec(v ?? '');
  if (m === null) return null;
  return ((Number(m[1] ?? 0) * 24 + Number(m[2] ?? 0)) * 60 + Number(m[3])) * 60 + Number(m[4]);
}

/** RequeueExit=75,76 or 70-80 (as `scontrol show config` prints it) as a list of statuses. */
function exitCodes(spec: string): number[] {
  const out: number[] = [];
  for (const part of spec.split(',')) {
    const m = /^\s*(\d+)(?:-(\d+))?\s*$/.exec(part);
    if (m === null) continue;
    for (let c = Number(m[1]); c <= Number(m[2] ?? m[1]); c++) out.push(c);
  }
  return out;
}

/** Runs scontrol. `scontrol requeue` of this job is answered by the end of this attempt: a
 *  SIGTERM to each of the job's processes, scontrol's too, which may come before it has seen
 *  the answer and exited; so it runs with SIGTERM ignored (kept across exec). */
function scontrol(args: string[]): string {
  const [cmd, argv] = args[0] === 'requeue' ? ['sh', ['-c', 'trap "" TERM; exec scontrol "$@"', 'sh', ...args]] : ['scontrol', args];
  return nodeChildProcess().execFileSync(cmd, argv, { encoding: 'utf8', timeout: 30_000, stdio: ['ignore', 'pipe', 'pipe'] });
}

/**
 * Puts a job stopped with exit 75 (after a checkpoint, or by a SIGTERM before its program ran)
 * back in the queue if Slurm will not (requeueDecision); returns what was done, for the job's
 * log. Slurm ends the running job at once when it requeues it: call this last.
 */
export function requeueAfterStop(job: SlurmJob): string {
  try {
    const fields = parseJobFields(scontrol(['show', 'job', '-o', job.jobId]));
    const config = /^RequeueExit\s*=\s*(.*)$/m.exec(scontrol(['show', 'config']))?.[1] ?? '';
    const d = requeueDecision(job, fields, config.trim());
    if (!d.requeue) return `job ${job.jobId} not requeued by stasis: ${d.why}`;
    scontrol(['requeue', job.jobId]);
    return `job ${job.jobId} requeued (scontrol requeue ${job.jobId}); its next attempt (launch --resume) goes on where this one stopped`;
  } catch (e) {
    const signal = (e as { signal?: string | null }).signal;
    if (typeof signal === 'string') return `scontrol was ended by ${signal} (Slurm ending this attempt): if job ${job.jobId} is not back in the queue, requeue it with 'scontrol requeue ${job.jobId}'`;
    const msg = ((e as { stderr?: string }).stderr || (e as Error).message).trim().split('\n')[0];
    return `could not requeue job ${job.jobId} (${msg}): requeue it with 'scontrol requeue ${job.jobId}'`;
  }
}
