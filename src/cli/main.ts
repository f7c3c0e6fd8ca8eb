// The `stasis` command line.
import { readFileSync } from 'node:fs';
import type { ControlOptions } from '../api.js';
import { EXIT, StasisError } from '../errors.js';
import { exemptPatterns } from '../files/rules.js';
import { CODECS, type Codec } from '../image/format.js';

/** Loaded per command: `run` needs none of the checkpoint machinery (image store, control). */
const api = (): Promise<typeof import('../api.js')> => import('../api.js');
import { COMPILE_MODES, type CompileMode } from '../launcher/compile.js';
import { exitProcess, stopEarlyOnSignals } from '../launcher/signals.js';
import type { Preopen } from '../wasi/state.js';
import { parseArgs, type OptionSpec, type Parsed } from './args.js';

const USAGE = `usage: stasis <command> [options]

commands:
  run [RUN OPTIONS] PROG.wasm [ARGS...]      run a wasm32-wasi program to completion
  launch [RUN OPTIONS] [CONTROL OPTIONS] PROG.wasm [ARGS...]
                                             run it under checkpoint control
  checkpoint [TARGET] [--exit] [--json]      checkpoint a launched program; print the image
  status [TARGET] [--json]                   list launched programs
  kill [TARGET]                              stop a launched program (no checkpoint)
  restart IMAGE|CKPT_DIR|FILE [--dir NEWHOST::GUEST]... [--env KEY=VALUE]... [--dry-run]
          [--compile MODE] [CONTROL OPTIONS] continue a program from an image, in this process
                                             (from an export FILE, its checkpoints go to
                                             --ckpt-dir, default ./NAME.ckpt)
  inspect IMAGE|CKPT_DIR|FILE [--json] [--verify]
                                             show what an image holds; --verify: check
                                             all of it, as a restart would
  export IMAGE|CKPT_DIR [-o FILE]            write one image into one file, to restart
                                             elsewhere (default ./NAME-gen-NNNNNN.tar;
                                             -o - writes to stdout); prints the file
  instrument PROG.wasm [-o OUT]              instrument ahead of time: into OUT (launch it as
                                             it is), else into the cache (STASIS_CACHE_DIR)

run options:
  --dir HOST[::GUEST]   give the program the host directory HOST, seen as GUEST
                        (default: HOST as written); repeatable
  --env KEY=VALUE       set an environment variable for the program; repeatable
  --inherit-env         pass this process's environment to the program (--env wins)
  --compile MODE        optimized: each function compiled by V8's optimizing compiler at
                        its first call (default for run: long loops run at full speed);
                        tiered: baseline first, hot functions optimized later (default for
                        launch and restart: quicker start for big instrumented programs,
                        whose running frames are re-entered early on to pick that code up)

control options:
  --ckpt-dir DIR        where images go (default ./NAME.ckpt)
  --name NAME           the program's name for TARGET (default: PROG without .wasm)
  --interval SECONDS    checkpoint periodically
  --keep N              keep only the N newest images
  --compress CODEC      none (default), deflate or brotli
  --quiet               don't print where the control socket and images are
  --checkpoint-at-call N  (testing) checkpoint at the program's Nth WASI call, exit 75
  --path-map OLD=NEW    open host paths under OLD from NEW instead (launch and restart);
                        the longest OLD wins; repeatable
  --allow-file-overwrite  at restart, replace files that differ from their saved copies
                        (their current versions are kept in CKPT_DIR/kept/)
  --no-rollback         DMTCP's rules exactly: no undo journal, so a restart leaves what the
                        program changed since the checkpoint as it is; open files are
                        classified by their offsets (at restart: roll nothing back)
  --rollback-exempt PATTERN
                        a restart never rolls back paths matching PATTERN (a glob as for
                        --ckpt-files; a directory covers what is below it): outputs to keep.
                        Repeatable; at launch (kept in the image) or at restart
  --plugin FILE.js      load a plugin (docs/plugins.md); repeatable
  --resume              (launch) if the checkpoint directory holds an image, continue from
                        the newest one instead, once it is found to be of this program with
                        these arguments, directories and variables (else exit 79); the one
                        command a job script that may be run again needs

file options (launch):
  --checkpoint-open-files  save every open file with each checkpoint
  --ckpt-files GLOB     save files matching GLOB; repeatable, first match wins
  --no-ckpt-files GLOB  don't save files matching GLOB
  --file-rules FILE     rules file: lines 'save|skip|log GLOB [-> RESTART_PATH]'
  Default: read-only files are reopened; files the program only appended to (logs) are cut
  back to their checkpoint size at restart (the cut tail is kept); files it wrote over or
  truncated (databases) and deleted open files are saved (not written yet: decided by the
  offset, at the end = log). Everything the program changes below its directories after a
  checkpoint is journaled and undone at restart (kept in CKPT_DIR/kept/), unless --no-rollback.

restart options:
  --dry-run             print what restart would do with each open file; change nothing

TARGET: a program name, a launcher pid, or a checkpoint directory (default: the only one).
Signals to a launched program: SIGTERM = checkpoint, then exit 75 (before the program
runs: exit 75 at once); SIGINT = exit 130. In a Slurm job (SLURM_JOB_ID set), SIGUSR1 and
SIGUSR2 = checkpoint, the program goes on; a stop with exit 75 requeues the job.

exit status: the program's own; 134 if it trapped; 75 stopped after a checkpoint;
137 stopped by 'stasis kill'; 64 usage error; 65 not a valid wasm module; 66 module
file not found; 67 not a WASI command Stasis can run; 68 bad or missing directory;
69 no such running program; 71 control channel failure; 72 not an image (missing,
foreign, newer format); 73 damaged image (truncated, hash mismatch); 74 a file the
program had open is missing; 76 a file differs from its saved copy, or a log is shorter
than at the checkpoint; 77 a file the restart must read or write is not accessible;
78 bad --file-rules file or --plugin; 79 launch --resume: the image is of another
program, or of other arguments, directories or variables; 70 internal error.`;

const RUN_OPTIONS: Record<string, OptionSpec> = {
  '--dir': { value: true, repeat: true },
  '--env': { value: true, repeat: true },
  '--inherit-env': {},
  '--compile': { value: true },
};
const CONTROL_OPTIONS: Record<string, OptionSpec> = {
  '--ckpt-dir': { value: true },
  '--name': { value: true },
  '--interval': { value: true },
  '--keep': { value: true },
  '--compress': { value: true },
  '--quiet': {},
  '--checkpoint-at-call': { value: true },
  '--path-map': { value: true, repeat: true },
  '--allow-file-overwrite': {},
  '--no-rollback': {},
  '--rollback-exempt': { value: true, repeat: true },
  '--plugin': { value: true, repeat: true },
};
const FILE_OPTIONS: Record<string, OptionSpec> = {
  '--checkpoint-open-files': {},
  '--ckpt-files': { value: true, repeat: true },
  '--no-ckpt-files': { value: true, repeat: true },
  '--file-rules': { value: true },
};
const HELP: Record<string, OptionSpec> = { '--help': {}, '-h': {} };

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

function parseDir(command: string, spec: string): Preopen {
  const sep = spec.indexOf('::');
  const host = sep >= 0 ? spec.slice(0, sep) : spec;
  const guest = sep >= 0 ? spec.slice(sep + 2) : spec;
  if (host === '' || guest === '') {
    throw new StasisError('USAGE', `stasis ${command}: --dir ${spec}: expected HOST or HOST::GUEST`);
  }
  return { host, guest };
}

function parseEnv(command: string, spec: string): string {
  if (spec.indexOf('=') <= 0) throw new StasisError('USAGE', `stasis ${command}: --env ${spec}: expected KEY=VALUE`);
  return spec;
}

function envOf(command: string, p: Parsed): string[] {
  const env = new Map<string, string>();
  if (p.options.has('--inherit-env')) {
    for (const [k, v] of Object.entries(process.env)) if (v !== undefined) env.set(k, `${k}=${v}`);
  }
  for (const spec of p.options.get('--env') ?? []) {
    const kv = parseEnv(command, spec);
    env.set(kv.slice(0, kv.indexOf('=')), kv);
  }
  return [...env.values()];
}

function compileOf(command: string, p: Parsed, fallback?: CompileMode): CompileMode | undefined {
  const v = p.options.get('--compile')?.[0];
  if (v === undefined) return fallback;
  if (!(COMPILE_MODES as readonly string[]).includes(v)) {
    throw new StasisError('USAGE', `stasis ${command}: --compile ${v}: expected ${COMPILE_MODES.join(' or ')}`);
  }
  return v as CompileMode;
}

const withCompile = (compile: CompileMode | undefined): { compile?: CompileMode } => (compile ? { compile } : {});

function positive(command: string, name: string, v: string | undefined, integer: boolean): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!(n > 0) || (integer && !Number.isInteger(n))) {
    throw new StasisError('USAGE', `stasis ${command}: ${name} ${v}: expected a positive ${integer ? 'integer' : 'number'}`);
  }
  return n;
}

function controlOf(command: string, p: Parsed): ControlOptions {
  const one = (k: string): string | undefined => p.options.get(k)?.[0];
  const compress = one('--compress');
  if (compress !== undefined && !(CODECS as readonly string[]).includes(compress)) {
    throw new StasisError('USAGE', `stasis ${command}: --compress ${compress}: expected ${CODECS.join(', ')}`);
  }
  // The CLI's launcher owns its process: signals and stops end it.
  const c: ControlOptions = { quiet: p.options.has('--quiet'), ownProcess: true };
  const ckptDir = one('--ckpt-dir');
  const name = one('--name');
  const interval = positive(command, '--interval', one('--interval'), false);
  const keep = positive(command, '--keep', one('--keep'), true);
  if (ckptDir !== undefined) c.ckptDir = ckptDir;
  if (name !== undefined) c.name = name;
  if (interval !== undefined) c.interval = interval;
  if (keep !== undefined) c.keep = keep;
  if (compress !== undefined) c.compress = compress as Codec;
  const at = positive(command, '--checkpoint-at-call', one('--checkpoint-at-call'), true);
  if (at !== undefined) c.checkpointAtCall = at;
  if (p.options.has('--path-map')) c.pathMap = p.options.get('--path-map')!;
  if (p.options.has('--plugin')) c.plugins = p.options.get('--plugin')!;
  if (p.options.has('--allow-file-overwrite')) c.allowFileOverwrite = true;
  if (p.options.has('--no-rollback')) c.noRollback = true;
  if (p.options.has('--rollback-exempt')) c.rollbackExempt = exemptPatterns(p.options.get('--rollback-exempt')!, process.cwd());
  return c;
}

function help(p: Parsed): boolean {
  if (!p.options.has('--help') && !p.options.has('-h')) return false;
  process.stdout.write(USAGE + '\n');
  return true;
}

/** Says at start-up when the sandbox is weaker than it should be: the addon could not be built or loaded. */
async function warnIfWeakSandbox(quiet = false): Promise<void> {
  if (quiet || process.env.STASIS_NO_NATIVE) return; // turned off on purpose: the user knows
  const { sandboxWeakness } = await import('../wasi/beneath.js');
  if (sandboxWeakness !== null) process.stderr.write(`stasis: warning: ${sandboxWeakness}\n`);
}

function report(result: { exitCode: number; trap?: string }): number {
  if (result.trap !== undefined) process.stderr.write(`stasis: ${result.trap}\n`);
  return result.exitCode;
}

async function cmdRun(argv: string[]): Promise<number> {
  const p = parseArgs('run', argv, { ...RUN_OPTIONS, ...HELP });
  if (help(p)) return 0;
  const [module, ...args] = p.operands;
  if (module === undefined) throw new StasisError('USAGE', 'stasis run: missing PROG.wasm; usage: stasis run [options] PROG.wasm [ARGS...]');
  const { run } = await import('../launcher/run.js').then((m) => ({ run: m.runCommand }));
  await warnIfWeakSandbox();
  return report(await run({
    module, args, env: envOf('run', p), preopens: (p.options.get('--dir') ?? []).map((d) => parseDir('run', d)),
    compile: compileOf('run', p, 'optimized'),
  }));
}

async function cmdLaunch(argv: string[]): Promise<number> {
  stopEarlyOnSignals();
  const p = parseArgs('launch', argv, { ...RUN_OPTIONS, ...CONTROL_OPTIONS, ...FILE_OPTIONS, '--resume': {}, ...HELP });
  if (help(p)) return 0;
  const [module, ...args] = p.operands;
  if (module === undefined) throw new StasisError('USAGE', 'stasis launch: missing PROG.wasm; usage: stasis launch [options] PROG.wasm [ARGS...]');
  // Only what this launch runs (not the whole API: a restart's, an export's code).
  const start = p.options.has('--resume') ? (await import('../launcher/resume.js')).resume : (await import('../launcher/launch.js')).launch;
  await warnIfWeakSandbox(p.options.has('--quiet'));
  // --resume with --inherit-env: only the variables named here are compared with the image's.
  const envGiven = p.options.has('--inherit-env') ? { envGiven: (p.options.get('--env') ?? []).map((e) => parseEnv('launch', e)) } : {};
  return report(await start({
    ...envGiven,
    module, args, env: envOf('launch', p),
    preopens: (p.options.get('--dir') ?? []).map((d) => parseDir('launch', d)),
    ...controlOf('launch', p),
    ...withCompile(compileOf('launch', p)),
    checkpointOpenFiles: p.options.has('--checkpoint-open-files'),
    ckptFiles: p.sequence.filter(([k]) => k === '--ckpt-files' || k === '--no-ckpt-files')
      .map(([k, pattern]) => ({ action: k === '--ckpt-files' ? 'save' as const : 'skip' as const, pattern })),
    ...(p.options.has('--file-rules') && { fileRules: p.options.get('--file-rules')![0]! }),
  }));
}

async function cmdRestart(argv: string[]): Promise<number> {
  const p = parseArgs('restart', argv, {
    '--dir': { value: true, repeat: true }, '--env': { value: true, repeat: true }, '--dry-run': {},
    '--compile': { value: true }, ...CONTROL_OPTIONS, ...HELP,
  }, true);
  if (help(p)) return 0;
  if (!p.options.has('--dry-run')) stopEarlyOnSignals();
  const [image, ...extra] = p.operands;
  if (image === undefined) throw new StasisError('USAGE', 'stasis restart: missing IMAGE or CKPT_DIR');
  if (extra.length > 0) throw new StasisError('USAGE', `stasis restart: unexpected argument ${extra[0]}`);
  const { restart, planRestart } = await api();
  await warnIfWeakSandbox(p.options.has('--quiet') || p.options.has('--dry-run'));
  const opts = {
    image, dirs: (p.options.get('--dir') ?? []).map((d) => parseDir('restart', d)),
    env: (p.options.get('--env') ?? []).map((e) => parseEnv('restart', e)), ...controlOf('restart', p),
    ...withCompile(compileOf('restart', p)),
  };
  if (p.options.has('--dry-run')) {
    const { lines, plan } = await planRestart(opts);
    process.stdout.write(lines.length === 0 ? 'no open files\n' : lines.join('\n') + '\n');
    if (plan.refusals.length === 0) return 0;
    const { checkPlan } = await import('../files/restore.js');
    checkPlan(plan); // throws the refusal, with its exit status
  }
  return report(await restart(opts));
}

async function cmdCheckpoint(argv: string[]): Promise<number> {
  const p = parseArgs('checkpoint', argv, { '--exit': {}, '--json': {}, ...HELP }, true);
  if (help(p)) return 0;
  const { checkpoint } = await api();
  const { progress } = await import('../launcher/progress.js');
  const target = single('checkpoint', p);
  const r = await progress(`checkpointing ${target ?? 'the program'} (until its image is durable)`, () =>
    checkpoint(target, { exit: p.options.has('--exit') }));
  process.stdout.write(p.options.has('--json') ? JSON.stringify(r) + '\n' : `${r.image}\n`);
  return 0;
}

async function cmdStatus(argv: string[]): Promise<number> {
  const p = parseArgs('status', argv, { '--json': {}, ...HELP }, true);
  if (help(p)) return 0;
  const target = single('status', p);
  const { status } = await api();
  const rows = await status(target);
  if (p.options.has('--json')) {
    process.stdout.write(JSON.stringify(target === undefined ? rows : rows[0]) + '\n');
  } else if (rows.length === 0) {
    process.stdout.write('no programs running under stasis launch\n');
  } else {
    for (const r of rows) {
      process.stdout.write(`${r.name}\tpid ${r.pid}\tcheckpoints ${r.generation ?? '?'}\t${r.ckptDir}\t${r.module}\n`);
    }
  }
  return 0;
}

async function cmdKill(argv: string[]): Promise<number> {
  const p = parseArgs('kill', argv, HELP, true);
  if (help(p)) return 0;
  const { kill } = await api();
  await kill(single('kill', p));
  return 0;
}

async function cmdExport(argv: string[]): Promise<number> {
  const p = parseArgs('export', argv, { '-o': { value: true }, ...HELP }, true);
  if (help(p)) return 0;
  const image = single('export', p);
  if (image === undefined) throw new StasisError('USAGE', 'stasis export: missing IMAGE or CKPT_DIR; usage: stasis export IMAGE|CKPT_DIR [-o FILE]');
  const out = p.options.get('-o')?.[0];
  const { exportImage } = await api();
  const r = await exportImage({ image, ...(out !== undefined && { out }) });
  if (r.file !== '-') process.stdout.write(`${r.file}\n`);
  return 0;
}

async function cmdInstrument(argv: string[]): Promise<number> {
  const p = parseArgs('instrument', argv, { '-o': { value: true }, ...HELP }, true);
  if (help(p)) return 0;
  const module = single('instrument', p);
  if (module === undefined) throw new StasisError('USAGE', 'stasis instrument: missing PROG.wasm; usage: stasis instrument PROG.wasm [-o OUT]');
  const { instrument } = await api();
  process.stdout.write(`${await instrument(module, p.options.get('-o')?.[0])}\n`);
  return 0;
}

async function cmdInspect(argv: string[]): Promise<number> {
  const p = parseArgs('inspect', argv, { '--json': {}, '--verify': {}, ...HELP }, true);
  if (help(p)) return 0;
  const path = single('inspect', p);
  if (path === undefined) throw new StasisError('USAGE', 'stasis inspect: missing IMAGE or CKPT_DIR');
  const { inspect, verify } = await api();
  if (p.options.has('--verify')) {
    const v = await verify(path);
    process.stdout.write(p.options.has('--json') ? JSON.stringify(v) + '\n'
      : `image ${v.image} verified: module, ${v.chunks} memory chunks${v.pagesBytes > 0 ? ` and ${v.pagesBytes} bytes of pages` : ''} (${v.memoryBytes} bytes), ${v.savedCopies} saved file copies\n`);
    return 0;
  }
  const info = await inspect(path);
  process.stdout.write(p.options.has('--json') ? JSON.stringify(info, null, 2) + '\n' : formatInspect(info));
  return 0;
}

function formatInspect(info: object): string {
  const lines: string[] = [];
  const walk = (o: unknown, indent: string): void => {
    for (const [k, v] of Object.entries(o as Record<string, unknown>)) {
      if (v !== null && typeof v === 'object') {
        lines.push(`${indent}${k}:`);
        walk(v, indent + '  ');
      } else {
        lines.push(`${indent}${k}: ${String(v)}`);
      }
    }
  };
  walk(info, '');
  return lines.join('\n') + '\n';
}

function single(command: string, p: Parsed): string | undefined {
  if (p.operands.length > 1) throw new StasisError('USAGE', `stasis ${command}: unexpected argument ${p.operands[1]}`);
  return p.operands[0];
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'run': return cmdRun(rest);
    case 'launch': return cmdLaunch(rest);
    case 'restart': return cmdRestart(rest);
    case 'checkpoint': return cmdCheckpoint(rest);
    case 'status': return cmdStatus(rest);
    case 'kill': return cmdKill(rest);
    case 'inspect': return cmdInspect(rest);
    case 'export': return cmdExport(rest);
    case 'instrument': return cmdInstrument(rest);
    case '--version':
    case '-V':
      process.stdout.write(`stasis ${version()}\n`);
      return 0;
    case undefined:
    case '--help':
    case '-h':
    case 'help':
      process.stdout.write(USAGE + '\n');
      return command === undefined ? EXIT.USAGE : 0;
    default:
      throw new StasisError('USAGE', `stasis: unknown command '${command}'; try 'stasis --help'`);
  }
}

// Not a top-level await: the CLI is loaded as a script (bin/stasis.js), for V8's code cache.
void main(process.argv.slice(2)).catch((e: unknown) => {
  if (e instanceof StasisError) {
    process.stderr.write(`stasis: ${e.message.replace(/^stasis:? /, '')}\n`);
    return e.exitCode;
  }
  process.stderr.write(`stasis: internal error: ${(e as Error).stack ?? String(e)}\n`);
  return EXIT.INTERNAL;
}).then((exitStatus) => {
  // Exit now: a thread waiting on the program's stdin must not keep the process alive. And
  // without Node's teardown (signals.ts exitProcess): everything is written by now (files
  // synchronously or awaited, stdio as process.exit leaves it), and the teardown would wait for
  // the guest's thread to end (or, after an early error, to finish starting for a program that
  // never came).
  exitProcess(exitStatus);
});
