// `npm run demo`: launch the bundled counter, checkpoint it, kill it, restart it from the image.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const stasis = join(root, 'bin', 'stasis.js');
const wasm = join(root, 'examples', 'counter.wasm');
const ckpt = mkdtempSync(join(tmpdir(), 'stasis-demo-'));
const say = (s) => process.stdout.write(`\n\x1b[1m== ${s}\x1b[0m\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

say(`stasis launch examples/counter.wasm 12   (images in ${ckpt})`);
const child = spawn(process.execPath, [stasis, 'launch', '--quiet', '--name', 'demo-counter', '--ckpt-dir', ckpt, wasm, '12'], { stdio: ['ignore', 'inherit', 'inherit'] });
const exited = new Promise((r) => child.on('exit', (code) => r(code)));
// The first launch of a module instruments it (a few seconds, cached afterwards).
while (spawnSync(process.execPath, [stasis, 'status', 'demo-counter']).status !== 0) await sleep(100);
await sleep(1600);
say('stasis checkpoint --exit demo-counter   (checkpoint, then stop it)');
const cp = spawnSync(process.execPath, [stasis, 'checkpoint', '--exit', 'demo-counter'], { encoding: 'utf8' });
process.stdout.write(cp.stdout + cp.stderr);
process.stdout.write(`launcher exited with status ${await exited} (75 = stopped after a checkpoint)\n`);
say(`stasis restart ${ckpt}   (a new process continues where it was)`);
const r = spawnSync(process.execPath, [stasis, 'restart', '--quiet', ckpt], { stdio: 'inherit' });
process.stdout.write(`restart exited with status ${r.status}\n`);
rmSync(ckpt, { recursive: true, force: true });
process.exit(r.status ?? 1);
