// Slurm awareness: the decisions of launcher/slurm.ts, then real jobs on a local Slurm
// (test/slurm-cluster.ts starts one; skipped where Slurm cannot be started).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseJobFields, requeueDecision, slurmJob } from '../src/launcher/slurm.js';

test('slurm: detected from SLURM_JOB_ID only', () => {
  assert.equal(slurmJob({}), null);
  assert.equal(slurmJob({ SLURM_JOB_ID: '' }), null);
  assert.deepEqual(slurmJob({ SLURM_JOB_ID: '42' }), { jobId: '42', restarts: 0 });
  assert.deepEqual(slurmJob({ SLURM_JOB_ID: '42', SLURM_RESTART_COUNT: '3' }), { jobId: '42', restarts: 3 });
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
