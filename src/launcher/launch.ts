// `stasis launch` and `stasis restart`: run a program under checkpoint control. The main
// thread serves the control socket, the --interval timer and signals, asks the guest for its
// state at a safe point, and writes the image while the guest goes on.
import { hostname } from 'node:os';
import { basename, resolve } from 'node:path';
import * as fs from 'node:fs';
import { maxFrameBytes } from '../engine/frames.js';
import type { EngineInfo, FilePolicyOptions, FileRecord, Snapshot } from '../image/schema.js';
import { captureFiles, type CopyCache, type FileCapture } from '../files/capture.js';
import { copyGuarded } from '../files/guard.js';
import { emit, loadPlugins, type StasisPlugin } from '../files/plugin.js';
import { builtinPolicy } from '../files/policy.js';
import { checkPathMap, mapPath, mergePathMaps, mountsOf, parsePathMap } from '../files/pathmap.js';
import { applyPlan, checkPlan, fileRecords, locationKey, physicalPath, planFiles, type FilePlan, type PlanOptions } from '../files/restore.js';
import { checkConflicts, cliRules, loadRulesFile, ruleData } from '../files/rules.js';
import { serve, type Reply, type Request } from '../control/channel.js';
import { newKey, register, socketPath, unregister } from '../control/registry.js';
import { EXIT, StasisError } from '../errors.js';
import type { CapturedState, GuestResult, RestoreState } from '../engine/guest.js';
import { listImages, readImage, writeImage } from '../image/index.js';
import { instrumentInThread, Unsupported } from '../instrument/thread.js';
import { loadModule, readModuleBytes } from './module.js';
import { lookupCache, sourceOf } from '../instrument/cache.js';
import type { InstrumentedModule } from '../instrument/index.js';
import { progress } from './progress.js';
import type { CompileMode } from './compile.js';
import { checkPreopens, SIGNAL_STATUS, type RunOptions } from './run.js';
import { GuestSession, type GuestSetup } from './session.js';
import { hostPathOf, type Preopen } from '../wasi/state.js';

export interface ControlOptions {
  /** Where images go (default ./NAME.ckpt). */
  ckptDir?: string;
  /** Program name (default: module file name without .wasm). */
  name?: string;
  /** Checkpoint every this many seconds. */
  interval?: number;
  /** Keep this many latest images (default: all). */
  keep?: number;
  /** Don't print where the socket and images are. */
  quiet?: boolean;
  compress?: 'none' | 'deflate' | 'brotli';
  /** Testing aid: checkpoint at the program's Nth WASI call, then stop (exit 75). */
  checkpointAtCall?: number;
  /** --plugin modules (paths), run after Stasis's own file rules. */
  plugins?: string[];
  /** --path-map OLD=NEW host path prefixes (at restart: added to, or replacing, the launch's). */
  pathMap?: string[];
  /** --allow-file-overwrite: a saved file that differs at restart is replaced (and kept as a backup). */
  allowFileOverwrite?: boolean;
  /**
   * The launcher owns this process, as the CLI does: SIGTERM checkpoints and exits 75, other
   * terminating signals exit, and a stop (`kill`, `checkpoint --exit`) exits the process.
   * Default false, for applications that embed Stasis: no signal handlers are installed, and a
   * stop ends only the program, whose promise resolves with exit code 75 or 137.
   */
  ownProcess?: boolean;
}

export interface LaunchOptions extends RunOptions, ControlOptions {
  /** --checkpoint-open-files: save every open file with each checkpoint. */
  checkpointOpenFiles?: boolean;
  /** --ckpt-files / --no-ckpt-files globs, in the order given. */
  ckptFiles?: { action: 'save' | 'skip'; pattern: string }[];
  /** --file-rules FILE. */
  fileRules?: string;
}

export interface RestartOptions extends ControlOptions {
  /** An image directory, or a checkpoint directory (its latest image). */
  image: string;
  /** Preopens to remap: GUEST names must be ones the program had. */
  dirs: Preopen[];
  /** "KEY=VALUE" overrides of the saved environment. */
  env: string[];
  /** Default: V8's flags as they are. Process-wide, as RunOptions.compile. */
  compile?: CompileMode;
}

/** Exit status of a program stopped after a checkpoint (sysexits' "try again later"). */
export const EXIT_CHECKPOINTED = 75;
/** Exit status of a program stopped by `stasis kill` (as SIGKILL would report it). */
export const EXIT_KILLED = 137;

export async function launch(opts: LaunchOptions): Promise<GuestResult> {
  const policy = launchPolicy(opts);
  // The program's state keeps the preopens as given; the host opens them through --path-map.
  const preopens = checkPreopens(opts.preopens);
  const physical = checkPreopens(preopens.map((p) => ({ guest: p.guest, host: mapPath(policy.pathMap, p.host) })));
  const plugins = [...builtinPolicy(policy), ...await loadPlugins(opts.plugins ?? [])];
  const { inst, module } = await instrumented(opts.module);
  const name = opts.name ?? basename(opts.module).replace(/\.wasm$/, '');
  const engine: EngineInfo = {
    unwindImports: inst.meta.unwindImports
      .filter((i) => i.startsWith('wasi_snapshot_preview1.'))
      .map((i) => i.slice('wasi_snapshot_preview1.'.length)),
    poll: inst.meta.pollImport !== null,
    stackPointer: inst.meta.stackPointer, maxFrameBytes: 0,
  };
  engine.maxFrameBytes = maxFrameBytes(inst.bytes);
  return supervise({
    name, ckptDir: resolve(opts.ckptDir ?? `${name}.ckpt`), opts,
    moduleBytes: inst.bytes, moduleHash: inst.sourceHash, instrumentedHash: inst.hash,
    engine, globals: inst.meta.globals, policy, plugins, where: { saved: preopens, dirs: [], pathMap: policy.pathMap, allowOverwrite: false },
    setup: {
      module, modulePath: opts.module,
      args: [opts.module, ...opts.args], env: opts.env, preopens: physical, mounts: mountsOf(policy.pathMap, preopens),
      ...(opts.compile && { compile: opts.compile }),
    },
  });
}

/** The program instrumented and compiled: from the cache (the original is neither compiled nor
 *  hashed twice; the cached module's hash is checked while it compiles), else vetted and built. */
async function instrumented(path: string): Promise<{ inst: InstrumentedModule; module: WebAssembly.Module }> {
  const source = sourceOf(path, () => readModuleBytes(path));
  const found = await lookupCache(source.sourceHash, { polls: true });
  if (found !== null) {
    let module: WebAssembly.Module | null = null;
    try {
      module = new WebAssembly.Module(found.module.bytes as Uint8Array<ArrayBuffer>);
    } catch {
      // a damaged entry: rebuilt below
    }
    if (await found.verified && module !== null) return { inst: found.module, module };
  }
  const bytes = source.bytes ?? readModuleBytes(path);
  loadModule(path, bytes); // a clear error for a module that is not a WASI command
  let inst;
  try {
    inst = await progress(`instrumenting ${path} (first launch of this module; cached afterwards)`, () =>
      instrumentInThread(bytes, { polls: true }));
  } catch (e) {
    if (e instanceof Unsupported) throw new StasisError('UNSUPPORTED', `${path}: ${e.message}`);
    throw e;
  }
  return { inst, module: new WebAssembly.Module(inst.bytes as Uint8Array<ArrayBuffer>) };
}

/** The file options of a launch, checked (conflicts, rules file, path maps). */
function launchPolicy(opts: LaunchOptions): FilePolicyOptions {
  const rules = [...cliRules(opts.ckptFiles ?? [], process.cwd()), ...(opts.fileRules !== undefined ? loadRulesFile(opts.fileRules) : [])];
  checkConflicts(rules);
  const pathMap = parsePathMap(opts.pathMap ?? [], 'launch');
  checkPathMap(pathMap, 'launch');
  return {
    checkpointOpenFiles: opts.checkpointOpenFiles === true, allowFileOverwrite: opts.allowFileOverwrite === true,
    rules: rules.map(ruleData), pathMap,
  };
}

/** What a restart would do with each open file, checked; nothing is changed. */
export async function planRestart(opts: RestartOptions): Promise<{ lines: string[]; plan: FilePlan }> {
  const p = await prepareRestart(opts);
  return { lines: p.plan.steps.map((s) => s.line), plan: p.plan };
}

async function prepareRestart(opts: RestartOptions) {
  const image = await readImage(opts.image, { memory: false }); // the guest thread reads the memory
  const snap = image.snapshot;
  const saved: FilePolicyOptions = snap.filePolicy ?? { checkpointOpenFiles: false, allowFileOverwrite: false, rules: [], pathMap: [] };
  const restartMap = parsePathMap(opts.pathMap ?? [], 'restart');
  checkPathMap(restartMap, 'restart');
  const policy: FilePolicyOptions = {
    ...saved, pathMap: mergePathMaps(saved.pathMap, restartMap),
    allowFileOverwrite: saved.allowFileOverwrite || opts.allowFileOverwrite === true,
  };
  const where: PlanOptions = { saved: snap.wasi.preopens, dirs: opts.dirs, pathMap: policy.pathMap, allowOverwrite: opts.allowFileOverwrite === true };
  const physical = remapPreopens(snap.wasi.preopens, opts.dirs, (p) => physicalPath(where, { preopen: p.guest, rel: '' })!);
  checkOtherFds(snap, where);
  const plan = planFiles(snap, where);
  // Files a rule moved stay where they were put for later checkpoints of this run.
  where.moved = new Map(plan.steps.filter((st) => st.record.restartPath !== undefined).map((st) => [locationKey(st.record.location), st.target]));
  return { image, snap, policy, physical, plan, where };
}

export async function restart(opts: RestartOptions): Promise<GuestResult> {
  const { image, snap, policy, physical, plan, where } = await prepareRestart(opts);
  checkPlan(plan);
  const plugins = [...builtinPolicy(policy), ...await loadPlugins(opts.plugins ?? [])];
  const env = mergeEnv(snap.wasi.env, opts.env);
  // A progress line (on a terminal, after a second) until the program runs again: saved files
  // restored, then the memory read in the guest's thread.
  let restored = (): void => {};
  let failed = (_e: unknown): void => {};
  void progress(`restarting from ${image.ref.path}`, () => new Promise<void>((ok, fail) => { restored = ok; failed = fail; }))
    .catch(() => {});
  try {
    const applied = applyPlan(plan, snap, image.ref.dir);
    for (const line of applied.kept) process.stderr.write(`stasis: ${line}\n`);
    await emit(plugins, 'onRestart', { image: image.ref.path, generation: image.ref.generation, plan: plan.steps.map((s) => s.line) });
    const restore: RestoreState = {
      image: { path: image.ref.path, generation: image.ref.generation }, globals: snap.globals, asyncifyData: snap.asyncifyData,
      fds: snap.wasi.fds, monotonicNs: snap.monotonicNs, stdinPending: snap.stdinPending,
      ...(snap.wasi.pollDeadlines && { pollDeadlines: snap.wasi.pollDeadlines }),
      handles: applied.handles,
    };
    let module: WebAssembly.Module;
    try {
      module = new WebAssembly.Module(image.moduleBytes as Uint8Array<ArrayBuffer>);
    } catch (e) {
      throw new StasisError('BAD_IMAGE', `${image.ref.path}: stored module does not compile: ${(e as Error).message}`);
    }
    return await supervise({
      name: opts.name ?? snap.meta.name, ckptDir: resolve(opts.ckptDir ?? image.ref.dir), opts,
      moduleBytes: image.moduleBytes, moduleHash: snap.moduleHash, instrumentedHash: snap.instrumentedHash,
      engine: { ...snap.engine, maxFrameBytes: snap.engine.maxFrameBytes ?? maxFrameBytes(image.moduleBytes) },
      globals: snap.globals.map(({ name, type }) => ({ name, type })),
      policy, plugins, where,
      setup: {
        module, modulePath: snap.wasi.args[0] ?? snap.meta.name, args: snap.wasi.args, env,
        preopens: physical, mounts: mountsOf(policy.pathMap, snap.wasi.preopens), restore,
        ...(opts.compile && { compile: opts.compile }),
      },
      onRestored: () => restored(),
      unchanged: applied.unchanged,
    });
  } catch (e) {
    failed(e);
    throw e;
  } finally {
    restored(); // settled already, unless the program ended before it ran
  }
}

/**
 * The preopens' host directories at restart (--dir NEWHOST::GUEST, else the saved one
 * through --path-map); each must exist.
 */
function remapPreopens(saved: Preopen[], dirs: Preopen[], where: (p: Preopen) => string): Preopen[] {
  for (const d of dirs) {
    if (!saved.some((p) => p.guest === d.guest)) {
      throw new StasisError('USAGE', `--dir ${d.host}::${d.guest}: the program has no directory ${d.guest} (it has ${saved.map((p) => p.guest).join(', ') || 'none'})`);
    }
  }
  const merged = saved.map((p) => ({ guest: p.guest, host: where(p) }));
  for (const p of merged) {
    if (!fs.existsSync(p.host)) {
      throw new StasisError('BAD_DIR', `directory ${p.host} (the program's ${p.guest}) is missing; restore it, or give --dir NEWHOST::${p.guest} or --path-map ${p.host}=NEWHOST`);
    }
  }
  return checkPreopens(merged);
}

/**
 * Directories the program had open (other than preopens), and files that have no record
 * (devices, pipes opened by path), must still be there.
 */
function checkOtherFds(snap: Snapshot, where: PlanOptions): void {
  const recorded = new Set(fileRecords(snap).flatMap((r) => r.fds));
  for (const f of snap.wasi.fds) {
    if (f.kind === 'stdio' || recorded.has(f.fd) || (f.kind === 'dir' && f.location.rel === '')) continue;
    const host = physicalPath(where, f.location);
    if (host !== null && fs.existsSync(host)) continue;
    const guest = `${f.location.preopen.replace(/\/$/, '')}/${f.location.rel}`;
    throw new StasisError('MISSING_FILE', `the program had ${f.kind === 'dir' ? 'the directory ' : ''}${guest} open (fd ${f.fd}), but ${host ?? 'its preopen'} is missing; put it back, or map it with --path-map or --dir NEWHOST::${f.location.preopen}`);
  }
}

function mergeEnv(saved: string[], overrides: string[]): string[] {
  const env = new Map(saved.map((kv) => [kv.slice(0, kv.indexOf('=')), kv] as const));
  for (const kv of overrides) env.set(kv.slice(0, kv.indexOf('=')), kv);
  return [...env.values()];
}

interface Supervised {
  name: string;
  ckptDir: string;
  opts: ControlOptions;
  moduleBytes: Uint8Array;
  moduleHash: string;
  instrumentedHash: string;
  engine: EngineInfo;
  globals: { name: string; type: 'i32' | 'i64' | 'f32' | 'f64' }[];
  policy: FilePolicyOptions;
  /** The built-in file policy, then --plugin ones. */
  plugins: StasisPlugin[];
  /** Where things are: the preopens as the program's state names them, and how they moved. */
  where: PlanOptions;
  setup: Omit<GuestSetup, 'checkpoint'>;
  /** For a restart: called once the image is loaded and the program is about to run. */
  onRestored?: () => void;
  /** For a restart: saved files reopened identical to their copies (restore.ts). */
  unchanged?: CopyCache;
}

async function supervise(s: Supervised): Promise<GuestResult> {
  fs.mkdirSync(s.ckptDir, { recursive: true });
  let generation = Math.max(0, ...(await listImages(s.ckptDir)).map((r) => r.generation));
  const session = new GuestSession({
    ...s.setup,
    checkpoint: {
      ...s.engine, globals: s.globals,
      ...(s.opts.checkpointAtCall !== undefined && { checkpointAtCall: s.opts.checkpointAtCall }),
    },
  });
  if (s.onRestored !== undefined) void session.restored.then(s.onRestored);
  const key = newKey();
  const socket = socketPath(key);

  // Checkpoints run one at a time: a request made while one is being written waits for it,
  // so at most one copy of the guest's memory is held here.
  let chain: Promise<unknown> = Promise.resolve();
  type Done = {
    image: string; generation: number; pauseMs: number; latencyMs: number; ms: number;
    bytesWritten: number; chunks: { written: number; reused: number; zero: number };
    files: { saved: number; copied: number };
  };
  const serialized = (step: () => Promise<Done>): Promise<Done> => {
    const next = chain.then(step);
    chain = next.catch(() => {});
    return next;
  };
  // The generation whose memory the guest's next change detection is relative to.
  let base: number | null = null;
  // Copies of saved files by identity, to skip files unchanged since their last copy.
  const copies: CopyCache = new Map(s.unchanged ?? []);
  /** The file side of a capture, while the guest waits; then it may go on. */
  const withFiles = async (captured: CapturedState): Promise<FileCapture & { copied: Promise<unknown> }> => {
    const filesFrom = performance.now();
    let files: FileCapture | undefined;
    try {
      files = await captureFiles(captured, {
        ckptDir: s.ckptDir, plugins: s.plugins, cache: copies, named: s.where.saved, physical: (loc) => physicalPath(s.where, loc),
      });
      // Big files are copied from here on, while the program goes on (files/guard.ts).
      const copied = Promise.all(files.guards.map(copyGuarded));
      copied.catch(() => {}); // persist awaits it; a failure is reported there
      return { ...files, copied };
    } catch (e) {
      giveBack(captured);
      throw e;
    } finally {
      session.release(files?.guards);
      captured.pauseMs += performance.now() - filesFrom; // the program waited for its files too
    }
  };
  const giveBack = (captured: CapturedState): void => {
    held = captured.memory.length;
    session.giveBuffer(captured.memory);
  };
  const persist = async (captured: CapturedState, files: FileCapture & { copied: Promise<unknown> }, t0: number, latencyMs: number): Promise<Done> => {
    const snapshot = toSnapshot(captured, files.records, s, ++generation);
    const pages = captured.dirtyPages;
    const dirty = pages !== null && base !== null
      ? { base, isDirty: (off: number, len: number) => pages.subarray(off >> 16, (off + len + 65535) >> 16).includes(1) }
      : undefined;
    base = null;
    try {
      await files.copied;
      const ref = await writeImage(s.ckptDir, snapshot, {
        moduleBytes: s.moduleBytes, ...(s.opts.keep !== undefined && { keep: s.opts.keep }),
        ...(s.opts.compress !== undefined && { compress: s.opts.compress }),
        ...(dirty !== undefined && { dirty }),
        stagedFiles: files.staged,
      });
      base = ref.generation;
      for (const [record, r] of files.remember) {
        copies.set(r.key, { size: r.st.size, mtimeNs: r.st.mtimeNs, ctimeNs: r.st.ctimeNs, copiedAt: r.copiedAt, copy: record.copy! });
      }
      return {
        image: ref.path, generation: ref.generation, pauseMs: captured.pauseMs, latencyMs,
        ms: performance.now() - t0, bytesWritten: ref.bytesWritten, chunks: ref.chunks,
        files: { saved: files.records.filter((r) => r.treatment === 'save').length, copied: files.staged.size },
      };
    } finally {
      giveBack(captured);
      for (const staged of files.staged.values()) fs.rmSync(staged, { force: true }); // published ones are gone already
    }
  };

  // Until a capture's buffer comes back, a capture copies memory into new pages, and on this
  // kind of VM touching 1 GiB of new pages takes seconds: the program would be paused that
  // long. So a buffer of the guest's current size is prepared (touched) ahead, in slices
  // between other work, and handed over just before a checkpoint that needs it.
  let held = 0; // size of the buffer the guest holds for its next capture
  let prepared: Uint8Array | null = null;
  let preparing: Promise<void> | null = null;
  const PREPARE_MIN = 64 << 20; // below this, fresh pages are cheap enough
  const prepare = setInterval(() => {
    const want = session.memoryBytes();
    if (preparing !== null || want < PREPARE_MIN || want === held || prepared?.length === want) return;
    prepared = null;
    preparing = new Promise<void>((done) => {
      const buf = new Uint8Array(want);
      let off = 0;
      const touch = (): void => {
        for (const end = Math.min(want, off + (32 << 20)); off < end; off += 4096) buf[off] = 0; // a write faults the page in
        if (off < want) {
          setImmediate(touch);
          return;
        }
        prepared = buf;
        preparing = null;
        done();
      };
      touch();
    });
  }, 100);
  prepare.unref();
  /** Whether a checkpoint now would find its capture buffer ready (else it first waits for it). */
  const captureReady = (): boolean => {
    const want = session.memoryBytes();
    return want < PREPARE_MIN || held === want || (preparing === null && prepared?.length === want);
  };
  const readyBuffer = async (): Promise<void> => {
    if (preparing !== null) await preparing;
    const want = session.memoryBytes();
    if (prepared !== null && prepared.length === want && held !== want) {
      session.giveBuffer(prepared);
      held = want;
      base = null; // a fresh buffer: the next capture's change map is not relative to an image
    }
    prepared = null;
  };
  const event = { name: s.name, ckptDir: s.ckptDir };
  const checkpoint = (stopAfter = false): Promise<Done> => serialized(async () => {
    await emit(s.plugins, 'beforeCheckpoint', event);
    const t0 = performance.now();
    await readyBuffer();
    const captured = await session.capture(stopAfter);
    const latencyMs = performance.now() - t0;
    const done = await persist(captured, await withFiles(captured), t0, latencyMs);
    await emit(s.plugins, 'afterCheckpoint', { ...event, image: done.image, generation: done.generation, resumed: !stopAfter });
    return done;
  });
  // --checkpoint-at-call: the guest checkpointed by itself; save it and stop, as on SIGTERM.
  session.onUnrequested = (captured) => {
    serialized(async () => persist(captured, await withFiles(captured), performance.now(), 0)).then(
      () => stop(EXIT_CHECKPOINTED),
      (e: Error) => {
        process.stderr.write(`stasis: checkpoint failed: ${e.message}\n`);
        stop(EXIT.INTERNAL);
      },
    );
  };

  const stop = (status: number): void => {
    session.flush();
    unregister(key);
    if (s.opts.ownProcess === true) process.exit(status);
    session.end(status);
  };
  const handler = async (req: Request): Promise<Reply> => {
    switch (req.cmd) {
      case 'checkpoint': {
        try {
          const r = await checkpoint(req.exit === true);
          if (req.exit) setImmediate(() => stop(EXIT_CHECKPOINTED));
          return { ok: true, ...r };
        } catch (e) {
          // The guest was held for a checkpoint that could not be saved: end, reporting it.
          if (req.exit) setImmediate(() => stop(EXIT.INTERNAL));
          throw e;
        }
      }
      case 'status':
        return { ok: true, name: s.name, pid: process.pid, ckptDir: s.ckptDir, generation, socket, captureReady: captureReady() };
      case 'kill':
        setImmediate(() => stop(EXIT_KILLED));
        return { ok: true };
    }
  };
  const server = serve(socket, handler);
  register(key, { name: s.name, pid: process.pid, socket, ckptDir: s.ckptDir, module: s.setup.modulePath, startedAt: new Date().toISOString() });
  if (!s.opts.quiet) {
    process.stderr.write(`stasis: ${s.name} running (pid ${process.pid}); control socket ${socket}; images in ${s.ckptDir}\n`);
  }

  const interval = s.opts.interval !== undefined && s.opts.interval > 0
    ? setInterval(() => void checkpoint().catch((e: Error) => process.stderr.write(`stasis: periodic checkpoint failed: ${e.message}\n`)), s.opts.interval * 1000)
    : null;

  // SIGTERM (a scheduler's or a cloud VM's preemption notice): checkpoint, then stop.
  const onTerm = (): void => {
    checkpoint(true).then(
      (r) => {
        if (!s.opts.quiet) process.stderr.write(`stasis: checkpointed to ${r.image} on SIGTERM\n`);
        stop(EXIT_CHECKPOINTED);
      },
      (e: Error) => {
        process.stderr.write(`stasis: checkpoint on SIGTERM failed: ${e.message}\n`);
        stop(143);
      },
    );
  };
  const own = s.opts.ownProcess === true;
  const plain = own ? SIGNAL_STATUS.filter(([sig]) => sig !== 'SIGTERM').map(([sig, status]) => {
    const h = (): void => stop(status);
    process.on(sig, h);
    return [sig, h] as const;
  }) : [];
  if (own) process.on('SIGTERM', onTerm);
  try {
    return await session.result;
  } finally {
    clearInterval(prepare);
    if (interval) clearInterval(interval);
    process.off('SIGTERM', onTerm);
    for (const [sig, h] of plain) process.off(sig, h);
    server.close();
    unregister(key);
  }
}

function toSnapshot(c: CapturedState, files: FileRecord[], s: Supervised, generation: number): Snapshot {
  return {
    moduleHash: s.moduleHash, instrumentedHash: s.instrumentedHash,
    memory: c.memory, globals: c.globals, asyncifyData: c.asyncifyData, engine: s.engine,
    // The preopens as the program's state names them, not where --path-map put them.
    wasi: { ...c.wasi, preopens: s.where.saved.map((p) => ({ ...p })) },
    monotonicNs: c.monotonicNs, stdinPending: c.stdinPending,
    stdinReceived: c.stdinReceived, files, filePolicy: s.policy,
    meta: {
      name: s.name, generation, createdAt: new Date().toISOString(), pauseMs: c.pauseMs,
      host: { hostname: hostname(), platform: process.platform, arch: process.arch, node: process.version, pid: process.pid },
    },
  };
}
