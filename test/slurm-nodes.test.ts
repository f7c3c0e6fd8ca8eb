// Real jobs on a local two-node Slurm (test/slurm-cluster.ts; skipped where Slurm cannot be
// started): a job moved to the other node, a job array, and a SIGTERM before the program runs
// in a launch and in a restart. Each job's output and files must be those of one uninterrupted run.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fixture, stasis, stasisBin, tempDir, tree } from './helpers.js';
import { ended, jobScript, slurmMissing, startCluster, submit, textOf, until, type Cluster } from './slurm-cluster.js';

const slurmSkip = slurmMissing();

/** What is below `dir` (helpers.ts's tree), nothing if it does not exist. */
const contents = (dir: string): Map<string, string> => (existsSync(dir) ? tree(dir) : new Map());

/** ckpt_job's uninterrupted run: stdout and the files it leaves in its directory. */
function reference(dir: string, name: string, args: string[]): { stdout: string; files: Map<string, string> } {
  const work = join(dir, `ref-${name}`);
  mkdirSync(work);
  const r = stasis(['run', '--dir', `${work}::/work`, fixture('ckpt_job'), '/work', ...args]);
  assert.equal(r.code, 0, r.stderr);
  return { stdout: r.stdout, files: tree(work) };
}

test('slurm, two nodes: a job moved off a drained node, a job array, and SIGTERMs before the program runs resume from their images; output and files as one run', { skip: slurmSkip ?? false, timeout: 600_000 }, async (t) => {
  let c: Cluster;
  try {
    c = await startCluster({ nodes: 2 });
  } catch (e) {
    t.skip(`Slurm could not be started here: ${(e as Error).message.split('\n')[0]}`);
    return;
  }
  const { dir, cleanup } = tempDir();
  const [nodeA, nodeB] = c.nodes as [string, string];
  try {
    await t.test('a job on a drained node, requeued, resumes on the other node from the shared checkpoint directory', async () => {
      const args = ['40', '100', '7'];
      const ref = reference(dir, 'moved', args);
      const work = join(dir, 'work-moved');
      mkdirSync(work);
      const where = join(dir, 'moved.nodes');
      const job = submit(c, dir, 'moved', jobScript(dir, 'moved', join(dir, 'ck-moved'),
        ['--dir', `${work}::/work`, fixture('ckpt_job'), '/work', ...args], 'exec',
        [`echo "\${SLURM_RESTART_COUNT:-0} $SLURMD_NODENAME $(hostname)" >> '${where}'`]), []);
      await until(() => job.out().includes('step 3 '), 'the job to run', [], () => ` (job: ${JSON.stringify(c.job(job.id))}; stderr: ${job.err()})`);
      // The scheduler prefers the first node (Weight); it is drained for maintenance, and the
      // job put back in the queue: it can only run on the other node now.
      assert.equal(c.job(job.id)['NodeList'], nodeA);
      c.run('scontrol', ['update', `NodeName=${nodeA}`, 'State=DRAIN', 'Reason=maintenance']);
      c.run('scontrol', ['requeue', job.id]);
      await until(() => ended(c, job.id), 'the moved job to end', [], job.err);
      c.run('scontrol', ['update', `NodeName=${nodeA}`, 'State=RESUME']);
      const fields = c.job(job.id);
      assert.equal(fields['JobState'], 'COMPLETED', job.err());
      assert.equal(fields['Restarts'], '1');
      assert.equal(fields['NodeList'], nodeB);
      const attempts = readFileSync(where, 'utf8').trim().split('\n').map((l) => l.split(' '));
      assert.deepEqual(attempts.map((a) => a.slice(0, 2)), [['0', nodeA], ['1', nodeB]]);
      // Each node its own host name where a UTS namespace could be made.
      if (c.ownHostnames) assert.deepEqual(attempts.map((a) => a[2]), [nodeA, nodeB]);
      else t.diagnostic('no UTS namespace here: both nodes have the same host name (two slurmd all the same)');
      assert.equal(job.out(), ref.stdout, job.err());
      assert.deepEqual(contents(work), ref.files);
      assert.match(job.err(), /^stasis: checkpointed to \S+gen-000001 on SIGTERM in \d+\.\d\d s /m);
      assert.match(job.err(), /^stasis: resuming ckpt_job from /m);
    });

    await t.test('a job array: each task its own checkpoint directory, signalled, requeued by itself (not the array), resumed', async () => {
      const tasks = [0, 1, 2, 3];
      const refs = tasks.map((i) => reference(dir, `task${i}`, ['40', '100', String(i)]));
      // As docs/slurm.md has it: one directory per task, from the array's job ID and the task's index.
      const script = join(dir, 'array.sh');
      writeFileSync(script, [
        '#!/bin/bash',
        `work='${dir}'/work-task$SLURM_ARRAY_TASK_ID`,
        'mkdir -p "$work"',
        `exec '${process.execPath}' '${stasisBin}' launch --resume --ckpt-dir '${dir}'/ck-\${SLURM_ARRAY_JOB_ID}_\${SLURM_ARRAY_TASK_ID} \\`,
        `  --dir "$work::/work" '${fixture('ckpt_job')}' /work 40 100 "$SLURM_ARRAY_TASK_ID"`,
        '',
      ].join('\n'), { mode: 0o755 });
      const array = c.run('sbatch', ['--parsable', `--array=0-${tasks.length - 1}`, '--open-mode=append',
        `--output=${join(dir, 'array-%a.out')}`, `--error=${join(dir, 'array-%a.err')}`, `--chdir=${dir}`, script]).trim();
      const out = tasks.map((i) => textOf(join(dir, `array-${i}.out`)));
      const err = tasks.map((i) => textOf(join(dir, `array-${i}.err`)));
      // Each task, once it runs, gets a SIGTERM to its batch shell, which is its launcher; Slurm
      // does not requeue on it (as at a time limit): the task checkpoints, stops, and requeues itself.
      const signalled = new Set<number>();
      await until(() => {
        for (const i of tasks) {
          if (signalled.has(i) || !out[i]!().includes('step 3 ')) continue;
          c.run('scancel', ['--batch', '--signal=TERM', `${array}_${i}`]);
          signalled.add(i);
        }
        return signalled.size === tasks.length;
      }, 'every task to run', [], () => ` (stderr: ${err.map((e) => e()).join('')})`);
      for (const i of tasks) {
        const task = `${array}_${i}`;
        await until(() => ended(c, task), `task ${i} to end`, [], err[i]!);
        const fields = c.job(task);
        assert.equal(fields['JobState'], 'COMPLETED', err[i]!());
        assert.equal(fields['Restarts'], '1', err[i]!());
        assert.equal(out[i]!(), refs[i]!.stdout, err[i]!());
        assert.deepEqual(contents(join(dir, `work-task${i}`)), refs[i]!.files);
        // A task requeues itself, not the array (whose ID is also one of its tasks').
        assert.match(err[i]!(), new RegExp(`^stasis: checkpointed to \\S+ck-${array}_${i}/images/gen-000001 on SIGTERM`, 'm'));
        assert.match(err[i]!(), new RegExp(`^stasis: job ${task} requeued \\(scontrol requeue ${task}\\)`, 'm'));
      }
    });

    await t.test('a SIGTERM while the first attempt instruments the module, and while a later one reads its image: exit 75, nothing changed, requeued', async () => {
      const args = ['30', '100', '11'];
      const ref = reference(dir, 'early', args);
      const work = join(dir, 'work-early');
      mkdirSync(work);
      const ckpt = join(dir, 'ck-early');
      const go = (n: number): string => join(dir, `early.go${n}`);
      // Attempt 0 stops where it starts instrumenting (a cache of its own: nothing cached),
      // attempt 2 where its restart has read the image, before it changes anything; attempts 1
      // and 3 wait for the test to have looked at what the attempt before them left.
      const job = submit(c, dir, 'early', jobScript(dir, 'early', ckpt,
        ['--dir', `${work}::/work`, fixture('ckpt_job'), '/work', ...args], 'exec', [
          `export STASIS_CACHE_DIR='${join(dir, 'cache-early')}'`,
          'n=${SLURM_RESTART_COUNT:-0}',
          'case $n in 0) export STASIS_TEST_PAUSE=instrument ;; 2) export STASIS_TEST_PAUSE=restart ;; esac',
          `until [ $n = 0 ] || [ $n = 2 ] || [ -e '${dir}'/early.go$n ]; do sleep 0.1; done`,
        ]), []);
      const requeuedLines = (): number => job.err().match(/^stasis: stopped on SIGTERM before the program ran; nothing written; job \d+ requeued /gm)?.length ?? 0;
      await until(() => job.err().includes('paused at instrument'), 'the first attempt to instrument', [], job.err);
      c.run('scancel', ['--batch', '--signal=TERM', job.id]);
      await until(() => requeuedLines() === 1, 'the first attempt to stop and requeue itself', [], job.err);
      assert.deepEqual(contents(ckpt), new Map());
      assert.deepEqual(contents(work), new Map());
      writeFileSync(go(1), '');

      await until(() => job.out().includes('step 3 '), 'the second attempt to run', [], job.err);
      c.run('scontrol', ['requeue', job.id]);
      await until(() => job.err().includes('paused at restart'), 'the third attempt to read its image', [], job.err);
      const before = { ckpt: contents(ckpt), work: contents(work) };
      c.run('scancel', ['--batch', '--signal=TERM', job.id]);
      await until(() => requeuedLines() === 2, 'the third attempt to stop and requeue itself', [], job.err);
      assert.deepEqual({ ckpt: contents(ckpt), work: contents(work) }, before);
      writeFileSync(go(3), '');

      await until(() => ended(c, job.id), 'the job to end', [], job.err);
      const fields = c.job(job.id);
      assert.equal(fields['JobState'], 'COMPLETED', job.err());
      assert.equal(fields['Restarts'], '3', job.err());
      assert.equal(job.out(), ref.stdout, job.err());
      assert.deepEqual(contents(work), ref.files);
    });
  } finally {
    await c.stop();
    cleanup();
  }
});
