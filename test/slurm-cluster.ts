// A real Slurm cluster of one node on this machine, for end-to-end tests: munged, slurmctld and
// slurmd (Debian's slurm-wlm and munge), each in the foreground as a child of the test, with a
// configuration written under a temporary directory (proctrack/linuxproc, task/none: no
// systemd, no cgroups), stopped by stop(). Needs root (slurmd runs jobs as their user).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { tempDir } from './helpers.js';

export interface Cluster {
  dir: string;
  /** The environment Slurm's commands need (SLURM_CONF). */
  env: NodeJS.ProcessEnv;
  /** Runs a Slurm command (sbatch, scontrol, ...); throws with its stderr if it fails. */
  run(cmd: string, args: string[]): string;
  /** `scontrol show job -o ID` as KEY=VALUE fields. */
  job(id: string): Record<string, string>;
  stop(): Promise<void>;
}

/** Why a cluster cannot be started here, or null if it can be tried. */
export function slurmMissing(): string | null {
  if (process.getuid?.() !== 0) return 'the test Slurm cluster needs root (slurmd runs jobs as their user)';
  for (const bin of ['munged', 'slurmctld', 'slurmd', 'sbatch', 'scontrol']) {
    if (spawnSync('sh', ['-c', `command -v ${bin}`]).status !== 0) return `${bin} is not installed (apt-get install -y slurm-wlm munge)`;
  }
  return null;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Starts the cluster; resolves once its node is idle. `extra` are more slurm.conf settings,
 * `debug` more settings of the default partition `debug`, `partitions` more partitions (NODE in
 * them stands for the node's name).
 */
export async function startCluster(opts: { extra?: string[]; debug?: string; partitions?: string[] } = {}): Promise<Cluster> {
  const { dir, cleanup } = tempDir('stasis-slurm-');
  const children: ChildProcess[] = [];
  const logs: string[] = [];
  const stop = async (): Promise<void> => {
    for (const c of children.reverse()) {
      if (c.exitCode === null && c.signalCode === null) {
        const gone = new Promise((r) => c.once('close', r));
        c.kill('SIGTERM');
        await gone;
      }
    }
    cleanup();
  };
  try {
    const munge = join(dir, 'munge');
    mkdirSync(munge, { mode: 0o700 });
    for (const d of ['state', 'spool', 'log']) mkdirSync(join(dir, d));
    writeFileSync(join(munge, 'munge.key'), randomBytes(1024), { mode: 0o400 });
    const socket = join(munge, 'munge.sock');
    const node = hostname().split('.')[0]!;
    const [ctldPort, slurmdPort] = [await freePort(), await freePort()];
    const conf = join(dir, 'slurm.conf');
    writeFileSync(conf, [
      'ClusterName=stasistest',
      `SlurmctldHost=${node}(127.0.0.1)`,
      `SlurmctldPort=${ctldPort}`, `SlurmdPort=${slurmdPort}`,
      'AuthType=auth/munge', 'CredType=cred/munge',
      // cred_expire also sets how long a requeued job waits before it may start again (120 s by default).
      `AuthInfo=socket=${socket},cred_expire=5`,
      'SlurmUser=root', 'SlurmdUser=root',
      `StateSaveLocation=${join(dir, 'state')}`, `SlurmdSpoolDir=${join(dir, 'spool')}`,
      `SlurmctldPidFile=${join(dir, 'slurmctld.pid')}`, `SlurmdPidFile=${join(dir, 'slurmd.pid')}`,
      `SlurmctldLogFile=${join(dir, 'log', 'slurmctld.log')}`, `SlurmdLogFile=${join(dir, 'log', 'slurmd.log')}`,
      'ProctrackType=proctrack/linuxproc', 'TaskPlugin=task/none',
      'SelectType=select/cons_tres', 'SelectTypeParameters=CR_CPU',
      'SchedulerType=sched/builtin', 'MpiDefault=none', 'ReturnToService=2',
      'JobCompType=jobcomp/none', 'AccountingStorageType=accounting_storage/none', 'JobAcctGatherType=jobacct_gather/none',
      'KillWait=10', 'MinJobAge=600', 'InactiveLimit=0', 'OverTimeLimit=0',
      // Pending jobs (a requeued one, once its delay is over) are looked at every 2 s, not 60.
      'SchedulerParameters=sched_interval=2',
      ...(opts.extra ?? []),
      `NodeName=${node} NodeAddr=127.0.0.1 CPUs=2 RealMemory=1000 State=UNKNOWN`,
      `PartitionName=debug Nodes=${node} Default=YES MaxTime=INFINITE State=UP ${opts.debug ?? ''}`,
      ...(opts.partitions ?? []).map((p) => p.replaceAll('NODE', node)),
      '',
    ].join('\n'));
    chmodSync(dir, 0o755);
    const env = { ...process.env, SLURM_CONF: conf };
    const daemon = (cmd: string, args: string[]): void => {
      const c = spawn(cmd, args, { env, stdio: ['ignore', 'ignore', 'pipe'] });
      c.stderr!.on('data', (d: Buffer) => logs.push(`${cmd}: ${d.toString()}`));
      children.push(c);
    };
    daemon('munged', ['--foreground', '--force', `--socket=${socket}`, `--key-file=${join(munge, 'munge.key')}`,
      `--log-file=${join(munge, 'munged.log')}`, `--pid-file=${join(munge, 'munged.pid')}`, `--seed-file=${join(munge, 'munged.seed')}`]);
    await until(() => spawnSync('test', ['-S', socket]).status === 0, 'munged to listen', logs);
    daemon('slurmctld', ['-D', '-i']);
    daemon('slurmd', ['-D', '-N', node]);
    const run = (cmd: string, args: string[]): string => {
      const r = spawnSync(cmd, args, { env, encoding: 'utf8', timeout: 60_000 });
      if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr || r.error?.message}`);
      return r.stdout;
    };
    await until(() => spawnSync('sinfo', ['-h', '-o', '%T'], { env, encoding: 'utf8' }).stdout?.trim() === 'idle', 'the node to be idle', logs,
      () => readFileSync(join(dir, 'log', 'slurmctld.log'), 'utf8').split('\n').slice(-5).join('\n'));
    return {
      dir, env, run, stop,
      job: (id) => Object.fromEntries([...run('scontrol', ['show', 'job', '-o', id]).matchAll(/(?:^|\s)([A-Za-z:/]+)=(\S*)/g)].map((m) => [m[1]!, m[2]!])),
    };
  } catch (e) {
    await stop();
    throw e;
  }
}

/** Waits for `cond` (a state of the cluster, checked every 100 ms), failing after `limitMs` (a
 *  guard against a hang, not a timing) with the daemons' messages. */
export async function until(cond: () => boolean, what: string, logs: string[] = [], more: () => string = () => '', limitMs = 180_000): Promise<void> {
  const deadline = Date.now() + limitMs;
  while (!cond()) {
    if (Date.now() > deadline) {
      let extra = '';
      try {
        extra = more();
      } catch {
        // no log yet
      }
      throw new Error(`timed out waiting for ${what}: ${logs.join('').slice(-2000)}${extra}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}
