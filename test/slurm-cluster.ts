// A real Slurm cluster on this machine, for end-to-end tests: munged, slurmctld and one or two
// slurmd (Debian's slurm-wlm and munge), each in the foreground as a child of the test, with a
// configuration written under a temporary directory (proctrack/linuxproc, task/none: no
// systemd, no cgroups), stopped by stop(). Needs root (slurmd runs jobs as their user). A second
// node is a second slurmd on its own port, in a UTS namespace of its own where it can make one
// (`unshare --uts`), so that its jobs see another host name; both share the file system, as the
// nodes of a cluster share theirs.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { stasisBin, tempDir } from './helpers.js';

export interface Cluster {
  dir: string;
  /** The nodes' names: the first is this machine's host name, a second one its own. */
  nodes: string[];
  /** Whether each node's jobs see the node's name as their host name (a UTS namespace per node
   *  after the first); false where no namespace could be made (the nodes are still two slurmd). */
  ownHostnames: boolean;
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
 * Starts the cluster; resolves once its nodes are idle. `extra` are more slurm.conf settings,
 * `debug` more settings of the default partition `debug` (all nodes), `partitions` more
 * partitions (NODE in them stands for the first node's name), `nodes` how many (1 or 2; the
 * scheduler prefers the first: Weight).
 */
/**
 * Ends what the cluster's jobs left running: their scripts (run from DIR's spool), everything
 * in their process groups, and the slurmstepd above them, which outlive slurmd.
 */
function killJobs(dir: string): void {
  const fields = (stat: string): number[] => stat.slice(stat.lastIndexOf(')') + 2).split(' ').slice(1, 3).map(Number);
  const [, ownGroup] = fields(readFileSync('/proc/self/stat', 'utf8'));
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let cmd: string;
    let stat: string;
    try {
      cmd = readFileSync(`/proc/${name}/cmdline`, 'utf8');
      stat = readFileSync(`/proc/${name}/stat`, 'utf8');
    } catch {
      continue; // gone meanwhile
    }
    if (!cmd.includes(`${dir}/spool`)) continue;
    // stat: "pid (comm) state ppid pgrp ..."; comm may hold spaces, so from the last ')'.
    const [ppid, pgrp] = fields(stat);
    const targets = [pgrp! > 1 && pgrp !== ownGroup ? -pgrp! : 0, ppid! > 1 && ppid !== process.pid ? ppid! : 0];
    for (const target of targets) {
      try {
        if (target !== 0) process.kill(target, 'SIGKILL');
      } catch { /* gone already */ }
    }
  }
}

export async function startCluster(opts: { extra?: string[]; debug?: string; partitions?: string[]; nodes?: 1 | 2 } = {}): Promise<Cluster> {
  const { dir, cleanup } = tempDir('stasis-slurm-');
  const children: ChildProcess[] = [];
  const logs: string[] = [];
  const stop = async (): Promise<void> => {
    killJobs(dir);
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
    for (const d of ['state', 'log']) mkdirSync(join(dir, d));
    writeFileSync(join(munge, 'munge.key'), randomBytes(1024), { mode: 0o400 });
    const socket = join(munge, 'munge.sock');
    const node = hostname().split('.')[0]!;
    const nodes = opts.nodes === 2 ? [node, `${node}-2`] : [node];
    const ownHostnames = nodes.length > 1 && spawnSync('unshare', ['--uts', 'true']).status === 0;
    const [ctldPort, slurmdPort] = [await freePort(), await freePort()];
    const ports = [slurmdPort];
    for (let i = 1; i < nodes.length; i++) ports.push(await freePort());
    for (const n of nodes) mkdirSync(join(dir, `spool-${n}`));
    const conf = join(dir, 'slurm.conf');
    writeFileSync(conf, [
      'ClusterName=stasistest',
      `SlurmctldHost=${node}(127.0.0.1)`,
      `SlurmctldPort=${ctldPort}`, `SlurmdPort=${slurmdPort}`,
      'AuthType=auth/munge', 'CredType=cred/munge',
      // cred_expire also sets how long a requeued job waits before it may start again (120 s by default).
      `AuthInfo=socket=${socket},cred_expire=5`,
      'SlurmUser=root', 'SlurmdUser=root',
      // %n: the node's name (each slurmd its own spool, pid and log file).
      `StateSaveLocation=${join(dir, 'state')}`, `SlurmdSpoolDir=${join(dir, 'spool-%n')}`,
      `SlurmctldPidFile=${join(dir, 'slurmctld.pid')}`, `SlurmdPidFile=${join(dir, 'slurmd-%n.pid')}`,
      `SlurmctldLogFile=${join(dir, 'log', 'slurmctld.log')}`, `SlurmdLogFile=${join(dir, 'log', 'slurmd-%n.log')}`,
      'ProctrackType=proctrack/linuxproc', 'TaskPlugin=task/none',
      'SelectType=select/cons_tres', 'SelectTypeParameters=CR_CPU',
      'SchedulerType=sched/builtin', 'MpiDefault=none', 'ReturnToService=2',
      'JobCompType=jobcomp/none', 'AccountingStorageType=accounting_storage/none', 'JobAcctGatherType=jobacct_gather/none',
      'KillWait=10', 'MinJobAge=600', 'InactiveLimit=0', 'OverTimeLimit=0',
      // Pending jobs (a requeued one, once its delay is over) are looked at every 2 s, not 60.
      'SchedulerParameters=sched_interval=2',
      ...(opts.extra ?? []),
      ...nodes.map((n, i) => `NodeName=${n} NodeHostname=${n} NodeAddr=127.0.0.1 Port=${ports[i]} Weight=${i + 1} CPUs=2 RealMemory=1000 State=UNKNOWN`),
      `PartitionName=debug Nodes=${nodes.join(',')} Default=YES MaxTime=INFINITE State=UP ${opts.debug ?? ''}`,
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
    nodes.forEach((n, i) => {
      if (i === 0) daemon('slurmd', ['-D', '-N', n]);
      else if (ownHostnames) daemon('unshare', ['--uts', 'sh', '-c', `hostname '${n}' && exec slurmd -D -N '${n}'`]);
      else daemon('slurmd', ['-D', '-N', n]);
    });
    const run = (cmd: string, args: string[]): string => {
      const r = spawnSync(cmd, args, { env, encoding: 'utf8', timeout: 60_000 });
      if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr || r.error?.message}`);
      return r.stdout;
    };
    // One line per node and partition: NAME STATE.
    const idle = (): boolean => new Set((spawnSync('sinfo', ['-h', '-N', '-o', '%N %T'], { env, encoding: 'utf8' }).stdout ?? '')
      .split('\n').filter((l) => l.endsWith(' idle'))).size === nodes.length;
    await until(idle, `${nodes.length === 1 ? 'the node' : 'the nodes'} to be idle`, logs,
      () => readFileSync(join(dir, 'log', 'slurmctld.log'), 'utf8').split('\n').slice(-5).join('\n'));
    return {
      dir, nodes, ownHostnames, env, run, stop,
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

/** A job script: the whole job is one `launch --resume`, exec'd (so the batch shell's signals
 *  reach it) or run as a job step (`srun`); `prelude` are shell lines before it. */
export function jobScript(dir: string, name: string, ckpt: string, program: string[], how: 'exec' | 'srun' = 'exec', prelude: string[] = []): string {
  const file = join(dir, `${name}.sh`);
  const launch = [process.execPath, stasisBin, 'launch', '--resume', '--ckpt-dir', ckpt, ...program].map((a) => `'${a}'`).join(' ');
  writeFileSync(file, `#!/bin/bash\n${prelude.map((l) => `${l}\n`).join('')}${how} ${launch}\n`, { mode: 0o755 });
  return file;
}

export interface Submitted {
  id: string;
  out: () => string;
  err: () => string;
}

/** sbatch SCRIPT with its output and error files NAME.out and NAME.err in `dir`, appended to
 *  across attempts. */
export function submit(c: Cluster, dir: string, name: string, script: string, options: string[]): Submitted {
  const out = join(dir, `${name}.out`);
  const err = join(dir, `${name}.err`);
  const id = c.run('sbatch', ['--parsable', '--open-mode=append', `--output=${out}`, `--error=${err}`, `--chdir=${dir}`, ...options, script]).trim();
  return { id, out: textOf(out), err: textOf(err) };
}

/** The text of a file written by a job, '' until it exists. */
export const textOf = (f: string) => (): string => (existsSync(f) ? readFileSync(f, 'utf8') : '');

/** Whether the job (or array task, ID_TASK) has ended, one way or another. */
export function ended(c: Cluster, id: string): boolean {
  return ['COMPLETED', 'FAILED', 'TIMEOUT', 'CANCELLED', 'NODE_FAIL', 'OUT_OF_MEMORY'].includes(c.job(id)['JobState']!);
}
