// pathvirt: `--path-map OLD=NEW` moves host path prefixes, at launch and at restart. The
// program's state keeps the old paths (it never sees host paths anyway: it sees its preopens'
// guest names); the mapping is applied where a host path is opened.
import { statSync } from 'node:fs';
import { resolve } from 'node:path';
import { StasisError } from '../errors.js';
import type { Mount, Preopen } from '../wasi/state.js';

export type PathMap = [string, string][];

/** Parses --path-map values (OLD=NEW, both made absolute); the same OLD twice is a conflict. */
export function parsePathMap(specs: readonly string[], command: string): PathMap {
  const map: PathMap = [];
  for (const spec of specs) {
    const eq = spec.indexOf('=');
    if (eq <= 0 || eq === spec.length - 1) {
      throw new StasisError('USAGE', `stasis ${command}: --path-map ${spec}: expected OLD=NEW (two host paths)`);
    }
    const from = resolve(spec.slice(0, eq));
    const to = resolve(spec.slice(eq + 1));
    const dup = map.find(([f]) => f === from);
    if (dup !== undefined && dup[1] !== to) {
      throw new StasisError('USAGE', `stasis ${command}: --path-map maps ${from} twice (to ${dup[1]} and to ${to}); give one`);
    }
    if (dup === undefined) map.push([from, to]);
  }
  return map;
}

/** Every NEW must be an existing directory or file: a map that points nowhere is a mistake. */
export function checkPathMap(map: PathMap, command: string): void {
  for (const [from, to] of map) {
    if (statSync(to, { throwIfNoEntry: false }) === undefined) {
      throw new StasisError('BAD_DIR', `stasis ${command}: --path-map ${from}=${to}: ${to} does not exist; create it or fix the path`);
    }
  }
}

/** Later maps override earlier ones with the same OLD (restart's over the launch's). */
export function mergePathMaps(base: PathMap, over: PathMap): PathMap {
  return [...base.filter(([f]) => !over.some(([g]) => g === f)), ...over];
}

/** Applies the longest OLD that is a prefix of `path` on a component boundary. */
export function mapPath(map: PathMap, path: string): string {
  let best: [string, string] | undefined;
  for (const m of map) {
    const from = m[0];
    const hit = path === from || (path.startsWith(from) && (from.endsWith('/') || path.charCodeAt(from.length) === 47));
    if (hit && (best === undefined || from.length > best[0].length)) best = m;
  }
  if (best === undefined) return path;
  const rest = path.slice(best[0].length);
  if (rest === '') return best[1];
  return best[1].endsWith('/') ? best[1] + rest.replace(/^\//, '') : best[1] + (rest.startsWith('/') ? rest : '/' + rest);
}

/** Maps whose OLD lies inside a preopen's directory: the host mounts NEW there for later opens. */
export function mountsOf(map: PathMap, preopens: readonly Preopen[]): Mount[] {
  const out: Mount[] = [];
  for (const [from, to] of map) {
    for (const p of preopens) {
      const root = p.host.endsWith('/') ? p.host : p.host + '/';
      if (from.startsWith(root) && from.length > root.length) out.push({ preopen: p.guest, rel: from.slice(root.length).replace(/\/+$/, ''), host: to });
    }
  }
  return out;
}
