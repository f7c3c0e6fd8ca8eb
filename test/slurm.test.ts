// Slurm awareness: the decisions of launcher/slurm.ts, then real jobs on a local Slurm
// (test/slurm-cluster.ts starts one; skipped where Slurm cannot be started).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { parseJobFields, requeueDecision, slurmJob } from '../src/launcher/slurm.js';
import { fixture, stasis, stasisBin, tempDir } from './helpers.js';
import { ended, jobScript, slurmMissing, startCluster, submit, until, type Cluster } from './slurm-cluster.js';

test('slurm: detected from SLURM_JOB_ID only; an array task named as ARRAY_TASK', () => {
  assert.equal(slurmJob({}), null);
  assert.equal(slurmJob({ SLURM_JOB_ID: '' }), null);
  assert.deepEqual(slurmJob({ SLURM_JOB_ID: '42' }), { jobId: '42', restarts: 0 });
  assert.deepEqual(slurmJob({ SLURM_JOB_ID: '42', SLURM_RESTART_COUNT: '3' }), { jobId: '42', restarts: 3 });
  // A task of an array: ARRAY_TASK, never the array's ID (the first task's own), which is all tasks to scontrol.
  assert.deepEqual(slurmJob({ SLURM_JOB_ID: '40', SLURM_ARRAY_JOB_ID: '40', SLURM_ARRAY_TASK_ID: '3' }), { jobId: '40_3', restarts: 0 });
  assert.deepEqual(slurmJob({ SLURM_JOB_ID: '43', SLURM_ARRAY_JOB_ID: '40', SLURM_ARRAY_TASK_ID: '0' }), { jobId: '40_0', restarts: 0 });
});

test('slurm: a job stopped after a checkpoint requeues itself unless Slurm does, or it was cancelled', () => {
  const job = { jobId: '7', restarts: 1 };
  const fields = (s: string) => parseJobFields(`JobId=7 JobName=x Requeue=1 Restarts=1 ${s} TimeLimit=00:01:00`);
  // scontrol show job -o, as Slurm 22.05 prints it at each of these moments:
  const cases: [string, string, boolean, RegExp][] = [
    ['warning TERM (--signal=B:TERM@N) or scancel --signal=TERM', 'JobState=RUNNING Reason=None RunTime=00:00:20', true, /^$/],
    ['time limit', 'JobState=COMPLETING Reason=TimeLimit RunTime=00:01:13', true, /^$/],
    ['scancel', 'JobState=COMPLETING Reason=None RunTime=00:00:02', false, /cancelled/],
    ['scontrol requeue or preemption (requeue mode)', 'JobState=COMPLETING Reason=None RunTime=00:00:02 Restarts=2', false, /requeued it already/],
  ];
  for (const [what, line, requeue, why] of cases) {
    const d = requeueDecision(job, fields(line), '');
    assert.equal(d.requeue, requeue, what);
    assert.match(d.why, why, what);
  }
  assert.equal(requeueDecision(job, fields('JobState=RUNNING Requeue=0'), '').requeue, false);
  assert.match(requeueDecision(job, fields('JobState=RUNNING'), '70-80').why, /RequeueExit/);
  assert.equal(requeueDecision(job, fields('JobState=RUNNING'), '1,2').requeue, true);
});

const slurmSkip = slurmMissing();

test('slurm: a job requeued by scontrol (as a batch script and as a job step), a job past its time limit warned by --signal, and a job preempted by a higher-priority partition resume from their images; output as one run', { skip: slurmSkip ?? false, timeout: 600_000 }, async (t) => {
  let c: Cluster;
  try {
    // Jobs in `low` may be preempted (and are requeued by Slurm) by jobs in `high`; the others not.
    c = await startCluster({
      extra: ['PreemptType=preempt/partition_prio', 'PreemptMode=REQUEUE'],
      debug: 'PriorityTier=1 PreemptMode=OFF',
      partitions: ['PartitionName=low Nodes=NODE MaxTime=INFINITE State=UP PriorityTier=1 PreemptMode=REQUEUE',
        'PartitionName=high Nodes=NODE MaxTime=INFINITE State=UP PriorityTier=2 PreemptMode=OFF'],
    });
  } catch (e) {
    t.skip(`Slurm could not be started here: ${(e as Error).message.split('\n')[0]}`);
    return;
  }
  const { dir, cleanup } = tempDir();
  try {
    const short = [fixture('ckpt_sleep'), '40', '100'];
    // Longer than the first attempt can be: Slurm keeps limits in whole minutes and enforces
    // them within 30 s after.
    const long = [fixture('ckpt_sleep'), '220', '500'];
    const refShort = stasis(['run', ...short]);
    // The uninterrupted run, alongside the jobs (it sleeps for 110 s).
    const refLong = new Promise<string>((resolve) => {
      const child = spawn(process.execPath, [stasisBin, 'run', ...long], { stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.on('close', () => resolve(out));
    });
    const requeued = submit(c, dir, 'requeued', jobScript(dir, 'requeued', join(dir, 'ck-requeued'), short), []);
    const limited = submit(c, dir, 'limited', jobScript(dir, 'limited', join(dir, 'ck-limited'), long), ['--time=1', '--signal=B:USR1@50']);

    await until(() => requeued.out().includes('tick 3 '), 'the first job to run', [], () => ` (job: ${JSON.stringify(c.job(requeued.id))}; stderr: ${requeued.err()})`);
    c.run('scontrol', ['requeue', requeued.id]);
    const done = (j: { id: string }) => (): boolean => ended(c, j.id);
    await until(done(requeued), 'the requeued job to end', [], requeued.err);
    assert.equal(c.job(requeued.id)['JobState'], 'COMPLETED', requeued.err());
    assert.equal(c.job(requeued.id)['Restarts'], '1');
    assert.equal(requeued.out(), refShort.stdout);
    assert.match(requeued.err(), /^stasis: checkpointed to \S+gen-000001 on SIGTERM in \d+\.\d\d s /m);
    assert.match(requeued.err(), /^stasis: job \d+ not requeued by stasis: Slurm has requeued it already$/m);
    assert.match(requeued.err(), /^stasis: resuming ckpt_sleep from /m);

    // The node's two CPUs: one for the job with a time limit, one for this one, until a job of
    // the higher partition needs it.
    const preempted = submit(c, dir, 'preempted', jobScript(dir, 'preempted', join(dir, 'ck-preempted'), short), ['--partition=low']);
    await until(() => preempted.out().includes('tick 3 '), 'the job in the low partition to run');
    const high = c.run('sbatch', ['--parsable', '--partition=high', `--output=${join(dir, 'high.out')}`, '--wrap', 'echo high']).trim();
    await until(done(preempted), 'the preempted job to end', [], preempted.err);
    assert.equal(c.job(high)['JobState'], 'COMPLETED');
    assert.equal(c.job(preempted.id)['JobState'], 'COMPLETED', preempted.err());
    assert.equal(c.job(preempted.id)['Restarts'], '1');
    assert.equal(preempted.out(), refShort.stdout, preempted.err());
    assert.match(preempted.err(), /^stasis: checkpointed to \S+gen-000001 on SIGTERM in \d+\.\d\d s /m);
    assert.match(preempted.err(), /^stasis: job \d+ not requeued by stasis: Slurm has requeued it already$/m);

    // The same as a job step.
    const step = submit(c, dir, 'step', jobScript(dir, 'step', join(dir, 'ck-step'), short, 'srun'), []);
    await until(() => step.out().includes('tick 3 '), 'the job step to run');
    c.run('scontrol', ['requeue', step.id]);
    await until(done(step), 'the job step\'s job to end', [], step.err);
    assert.equal(c.job(step.id)['JobState'], 'COMPLETED', step.err());
    assert.equal(step.out(), refShort.stdout, step.err());
    assert.match(step.err(), /^stasis: checkpointed to \S+gen-000001 on SIGTERM in \d+\.\d\d s /m);

    await until(done(limited), 'the job with a time limit to end', [], limited.err, 300_000);
    const err = limited.err();
    assert.equal(c.job(limited.id)['JobState'], 'COMPLETED', err);
    assert.ok(Number(c.job(limited.id)['Restarts']) >= 1, err);
    assert.equal(limited.out(), await refLong, err);
    assert.match(err, /^stasis: checkpointed to \S+ on SIGUSR1 \(Slurm's warning; the program goes on\) in \d+\.\d\d s/m);
    assert.match(err, /^stasis: checkpointed to \S+ on SIGTERM in \d+\.\d\d s/m);
    assert.match(err, new RegExp(`^stasis: job ${limited.id} requeued \\(scontrol requeue ${limited.id}\\)`, 'm'));
  } finally {
    await c.stop();
    cleanup();
  }
});
