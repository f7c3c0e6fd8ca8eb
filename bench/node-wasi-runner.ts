// The benchmark's baseline runtime: runs a WASI preview-1 program under Node's own `node:wasi`
// (uvwasi, in C++), with the same command line as `stasis run`, so bench.ts drives both the same way:
//   node dist/bench/node-wasi-runner.js [--dir HOST[::GUEST]]... [--env K=V]... prog.wasm [args...]
// Exit code = the program's. Nothing here is timed by itself: bench.ts times the whole child.
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { WASI } from 'node:wasi';

function usage(msg: string): never {
  process.stderr.write(`node-wasi-runner: ${msg}\n` +
    'usage: node-wasi-runner.js [--dir HOST[::GUEST]]... [--env K=V]... prog.wasm [args...]\n');
  process.exit(2);
}

const argv = process.argv.slice(2);
const preopens: Record<string, string> = {};
const env: Record<string, string> = {};
let i = 0;
for (; i < argv.length; i++) {
  const a = argv[i]!;
  if (a === '--') { i++; break; }
  if (a === '--dir' || a === '--env') {
    const v = argv[++i];
    if (v === undefined) usage(`${a} needs a value`);
    if (a === '--dir') {
      const sep = v.indexOf('::');
      const host = sep < 0 ? v : v.slice(0, sep);
      const guest = sep < 0 ? v : v.slice(sep + 2);
      preopens[guest] = resolve(host);
    } else {
      const eq = v.indexOf('=');
      if (eq <= 0) usage(`--env wants K=V, got ${v}`);
      env[v.slice(0, eq)] = v.slice(eq + 1);
    }
    continue;
  }
  if (a.startsWith('-')) usage(`unknown option ${a}`);
  break;
}
const prog = argv[i];
if (prog === undefined) usage('no program given');
const args = argv.slice(i + 1);

const wasi = new WASI({ version: 'preview1', args: [prog, ...args], env, preopens, returnOnExit: true });
const module = await WebAssembly.compile(readFileSync(prog));
const instance = await WebAssembly.instantiate(module, wasi.getImportObject() as WebAssembly.Imports);
process.exitCode = wasi.start(instance);
