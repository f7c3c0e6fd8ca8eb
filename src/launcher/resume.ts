// `stasis launch --resume`: one command for a job script that may run many times. With an
// image in the checkpoint directory, the program continues from the newest one (after checking
// it is this program, with these arguments, directories and variables); without, it is launched.
import { join } from 'node:path';
import { ImageError, StasisError } from '../errors.js';
import type { GuestResult } from '../engine/protocol.js';
import { generations, readImage } from '../image/index.js';
import { IMAGES, genName } from '../image/format.js';
import type { Snapshot } from '../image/schema.js';
import { sourceOf } from '../instrument/cache.js';
import { launch, launchPolicy, launchTarget, type LaunchOptions } from './launch.js';
import { readModuleBytes } from './module.js';
import { restart } from './restart.js';
import { checkPreopens } from './run.js';
import { stopEarlyOnSignals } from './signals.js';

export interface ResumeOptions extends LaunchOptions {
  /**
   * The variables to compare with the image's: those named on the command line (--env). Default:
   * all of `env`. With --inherit-env the rest comes from this process's environment, which
   * differs from one attempt to the next (a scheduler's job variables) and is not compared.
   */
  envGiven?: string[];
}

export async function resume(opts: ResumeOptions): Promise<GuestResult> {
  if (opts.ownProcess === true) stopEarlyOnSignals();
  const { name, ckptDir } = launchTarget(opts);
  const gens = await generations(ckptDir);
  if (gens.length === 0) return launch(opts);
  // Images are published whole (renamed into place), so the newest one is what the last
  // attempt left: a damaged one is refused rather than run from an older state or from scratch.
  const newest = gens[gens.length - 1]!;
  const imageDir = join(ckptDir, IMAGES, genName(newest));
  let snap: Snapshot;
  try {
    snap = (await readImage(imageDir, { memory: false })).snapshot;
  } catch (e) {
    if (!(e instanceof ImageError) || e.reason === 'BAD_VERSION') throw e;
    const older = gens.length > 1 ? `restart an older one with 'stasis restart ${join(ckptDir, IMAGES, genName(gens[gens.length - 2]!))}', or ` : '';
    throw new ImageError('CORRUPT', `--resume: the newest image in ${ckptDir} cannot be used (${e.message.replace(/\.?$/, '')}); nothing was run: ${older}move ${imageDir} away to start over`, e.file);
  }
  checkSameRun(opts, snap, imageDir);
  if (!opts.quiet) process.stderr.write(`stasis: resuming ${name} from ${imageDir}\n`);
  const { module: _m, args: _a, env: _e, preopens: _p, checkpointOpenFiles: _c, ckptFiles: _f, fileRules: _r, envGiven: _g, ...control } = opts;
  return restart({ ...control, image: imageDir, ckptDir, name, dirs: [], env: [] });
}

/** The image must be of this run: same module content, arguments, directories, variables and
 *  file rules; anything else is refused before anything is changed. */
function checkSameRun(opts: ResumeOptions, snap: Snapshot, imageDir: string): void {
  const refuse = (what: string): never => {
    throw new StasisError('MISMATCH', `--resume: ${imageDir} is ${what}; give the same command line as the run that wrote it, or another --ckpt-dir`);
  };
  const { sourceHash } = sourceOf(opts.module, () => readModuleBytes(opts.module));
  if (sourceHash !== snap.moduleHash) refuse(`of another program (module sha256 ${snap.moduleHash.slice(0, 12)}…, ${opts.module} is ${sourceHash.slice(0, 12)}…)`);
  const args = snap.wasi.args.slice(1);
  if (!sameList(args, opts.args)) refuse(`of a run with other arguments (${JSON.stringify(args)}, not ${JSON.stringify(opts.args)})`);
  const dirs = (ps: { host: string; guest: string }[]): string[] => ps.map((p) => `${p.host}::${p.guest}`);
  const saved = dirs(snap.wasi.preopens);
  const given = dirs(checkPreopens(opts.preopens));
  if (!sameList(saved, given)) refuse(`of a run with other directories (--dir ${saved.join(' --dir ') || 'none'})`);
  const savedEnv = new Set(snap.wasi.env);
  const envGiven = opts.envGiven ?? opts.env;
  const differs = envGiven.filter((kv) => !savedEnv.has(kv));
  if (opts.envGiven === undefined) differs.push(...snap.wasi.env.filter((kv) => !opts.env.includes(kv)));
  const keys = [...new Set(differs.map((kv) => kv.slice(0, kv.indexOf('='))))];
  if (keys.length > 0) refuse(`of a run with other environment variables (differing: ${keys.join(', ')})`);
  const policy = launchPolicy(opts, checkPreopens(opts.preopens));
  const rules = (p: { checkpointOpenFiles: boolean; rules: unknown[] } | undefined): string =>
    JSON.stringify({ all: p?.checkpointOpenFiles ?? false, rules: p?.rules ?? [] });
  if (rules(policy) !== rules(snap.filePolicy)) refuse('of a run with other file options (--checkpoint-open-files, --ckpt-files, --no-ckpt-files, --file-rules)');
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
