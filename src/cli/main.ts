// The `stasis` command line.
import { readFileSync } from 'node:fs';
import { EXIT, StasisError } from '../errors.js';
import { runCommand } from '../run.js';
import type { Preopen } from '../wasi/state.js';
import { parseArgs } from './args.js';

const USAGE = `usage: stasis <command> [options]

commands:
  run [options] PROG.wasm [ARGS...]   run a wasm32-wasi program to completion

run options:
  --dir HOST[::GUEST]   give the program the host directory HOST, seen as GUEST
                        (default: HOST as written); repeatable
  --env KEY=VALUE       set an environment variable for the program; repeatable
  --inherit-env         pass this process's environment to the program (--env wins)

exit status: the program's own; 134 if it trapped; 64 usage error, 65 not a valid
wasm module, 66 module file not found, 67 not a WASI command, 68 bad --dir, 70 internal.`;

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

function parseDir(spec: string): Preopen {
  const sep = spec.indexOf('::');
  const host = sep >= 0 ? spec.slice(0, sep) : spec;
  const guest = sep >= 0 ? spec.slice(sep + 2) : spec;
  if (host === '' || guest === '') {
    throw new StasisError('USAGE', `stasis run: --dir ${spec}: expected HOST or HOST::GUEST`);
  }
  return { host, guest };
}

function parseEnv(spec: string): [string, string] {
  const eq = spec.indexOf('=');
  if (eq <= 0) throw new StasisError('USAGE', `stasis run: --env ${spec}: expected KEY=VALUE`);
  return [spec.slice(0, eq), spec.slice(eq + 1)];
}

async function cmdRun(argv: string[]): Promise<number> {
  const { options, operands } = parseArgs('run', argv, {
    '--dir': { value: true, repeat: true },
    '--env': { value: true, repeat: true },
    '--inherit-env': {},
    '--help': {},
    '-h': {},
  });
  if (options.has('--help') || options.has('-h')) {
    process.stdout.write(USAGE + '\n');
    return 0;
  }
  const [module, ...args] = operands;
  if (module === undefined) throw new StasisError('USAGE', 'stasis run: missing PROG.wasm; usage: stasis run [options] PROG.wasm [ARGS...]');
  const env = new Map<string, string>();
  if (options.has('--inherit-env')) {
    for (const [k, v] of Object.entries(process.env)) if (v !== undefined) env.set(k, v);
  }
  for (const spec of options.get('--env') ?? []) {
    const [k, v] = parseEnv(spec);
    env.set(k, v);
  }
  const result = await runCommand({
    module, args,
    env: [...env].map(([k, v]) => `${k}=${v}`),
    preopens: (options.get('--dir') ?? []).map(parseDir),
  });
  if (result.trap !== undefined) process.stderr.write(`stasis: ${result.trap}\n`);
  return result.exitCode;
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'run':
      return cmdRun(rest);
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

let status: number;
try {
  status = await main(process.argv.slice(2));
} catch (e) {
  if (e instanceof StasisError) {
    process.stderr.write(`stasis: ${e.message.replace(/^stasis:? /, '')}\n`);
    status = e.exitCode;
  } else {
    process.stderr.write(`stasis: internal error: ${(e as Error).stack ?? String(e)}\n`);
    status = EXIT.INTERNAL;
  }
}
// Exit now: a thread blocked reading stdin for the program must not keep the process alive.
process.exit(status);
