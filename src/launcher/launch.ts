// `stasis launch`: a program started under checkpoint control. The module is instrumented
// (once: cached; instrumented.ts), the file options are checked, then it runs under supervision.
import { basename } from 'node:path';
import type { GuestResult } from '../engine/protocol.js';
import type { Preopen } from '../wasi/state.js';
import { maxFrameBytes } from '../engine/stack.js';
import { loadPlugins } from '../files/plugin.js';
import { builtinPolicy } from '../files/policy.js';
import { checkPathMap, mapPath, mountsOf, parsePathMap } from '../files/pathmap.js';
import { checkConflicts, checkRestartPaths, cliRules, loadRulesFile, ruleData } from '../files/rules.js';
import type { EngineInfo, FilePolicyOptions } from '../image/schema.js';
import { WASI_MODULE } from '../instrument/abi.js';
import { instrumentedModule } from './instrumented.js';
import { checkPreopens, type RunOptions } from './run.js';
import { stopEarlyOnSignals } from './signals.js';
import { checkpointDir, type ControlOptions } from './supervisor.js';
import { superviseProgram } from './main-thread.js';

export interface LaunchOptions extends RunOptions, ControlOptions {
  /** --checkpoint-open-files: save every open file with each checkpoint. */
  checkpointOpenFiles?: boolean;
  /** --ckpt-files / --no-ckpt-files globs, in the order given. */
  ckptFiles?: { action: 'save' | 'skip'; pattern: string }[];
  /** --file-rules FILE. */
  fileRules?: string;
}

/** The program's name (--name, else the module's file name) and its checkpoint directory. */
export function launchTarget(opts: LaunchOptions): { name: string; ckptDir: string } {
  const name = opts.name ?? basename(opts.module).replace(/\.wasm$/, '');
  return { name, ckptDir: checkpointDir(opts.ckptDir ?? `${name}.ckpt`) };
}

export async function launch(opts: LaunchOptions): Promise<GuestResult> {
  if (opts.ownProcess === true) stopEarlyOnSignals();
  const { name, ckptDir } = launchTarget(opts);
  // The program's state keeps the preopens as given; the host opens them through --path-map.
  const preopens = checkPreopens(opts.preopens);
  const policy = launchPolicy(opts, preopens);
  const physical = checkPreopens(preopens.map((p) => ({ guest: p.guest, host: mapPath(policy.pathMap, p.host) })));
  const plugins = [...builtinPolicy(policy), ...await loadPlugins(opts.plugins ?? [])];
  const { inst, module } = await instrumentedModule(opts.module);
  const engine: Required<EngineInfo> = {
    unwindImports: inst.meta.unwindImports
      .filter((i) => i.startsWith(`${WASI_MODULE}.`))
      .map((i) => i.slice(WASI_MODULE.length + 1)),
    poll: inst.meta.pollImport !== null,
    stackPointer: inst.meta.stackPointer,
    maxFrameBytes: maxFrameBytes(inst.bytes),
    endingGate: inst.meta.endingGate ?? null,
  };
  return superviseProgram({
    name, ckptDir, opts,
    moduleBytes: inst.bytes, moduleHash: inst.sourceHash, instrumentedHash: inst.hash,
    engine, globals: inst.meta.globals, policy, plugins, where: { saved: preopens, dirs: [], pathMap: policy.pathMap, allowOverwrite: false },
    setup: {
      module, modulePath: opts.module,
      args: [opts.module, ...opts.args], env: opts.env, preopens: physical, mounts: mountsOf(policy.pathMap, preopens),
      ...(opts.compile && { compile: opts.compile }),
    },
  });
}

/** The file options of a launch, checked (conflicts, rules file, path maps). */
export function launchPolicy(opts: LaunchOptions, preopens: Preopen[]): FilePolicyOptions {
  const all = [...cliRules(opts.ckptFiles ?? [], process.cwd()), ...(opts.fileRules !== undefined ? loadRulesFile(opts.fileRules) : [])];
  // `exempt` lines of a rules file are --rollback-exempt patterns; the others decide what is saved.
  const rules = all.filter((r) => r.action !== 'exempt');
  const exempt = [...opts.rollbackExempt ?? [], ...all.filter((r) => r.action === 'exempt').map((r) => r.resolved)];
  checkConflicts(rules);
  checkRestartPaths(rules, preopens);
  const pathMap = parsePathMap(opts.pathMap ?? [], 'launch');
  checkPathMap(pathMap, 'launch');
  return {
    checkpointOpenFiles: opts.checkpointOpenFiles === true, allowFileOverwrite: opts.allowFileOverwrite === true,
    ...(opts.noRollback === true && { noRollback: true }),
    ...(exempt.length > 0 && { rollbackExempt: exempt }),
    rules: rules.map(ruleData), pathMap,
  };
}
