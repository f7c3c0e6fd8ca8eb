// Which open files a checkpoint saves ("ckptfiles"), from --ckpt-files / --no-ckpt-files GLOB
// and a --file-rules FILE. The first rule that matches a file decides; command-line rules come
// before the file's (the caller concatenates them in that order).
//
// Patterns (matched against absolute, normalised host paths):
//   - A pattern without '/' matches the file's name only, as in .gitignore: *.log matches /a/b/x.log.
//   - A pattern with '/' is a path. A relative one is resolved against the current directory
//     (command line) or the rules file's directory (rules file), as path.resolve does ('.' and
//     '..' are folded, a trailing '/' is dropped), keeping the glob characters.
//   - *      any run of characters except '/' (names starting with '.' too)
//     ?      one character except '/'
//     **     as a whole component: zero or more components (/a/**/x matches /a/x and /a/b/c/x);
//            at the end, everything below (/a/** matches /a/b and /a/b/c, not /a itself)
//     [abc] [a-z] [!abc]   one character in / not in the class ('/' never matches)
//     \c     the character c itself
//     Everything else is literal. A '[' without its ']' is an error.
//
// Rules file (one rule a line):
//   # comment; blank lines ignored; leading/trailing whitespace ignored
//   save  PATTERN                 # save this file's contents with each checkpoint
//   skip  PATTERN                 # never save it (reopened as-is at restart)
//   log   PATTERN                 # treat it as a log: cut back to its checkpoint size at restart
//   save  PATTERN -> RESTART_PATH # ...and at restart, use RESTART_PATH instead of its old path
//   - Fields are separated by whitespace; '#' at the start of a field begins a comment.
//   - A field with spaces can be double-quoted ("my file.db"); inside quotes \" is " and \\ is \.
//     Other backslashes are kept, so they still escape glob characters.
//   - "-> RESTART_PATH" is allowed on all three actions. A relative RESTART_PATH is resolved
//     against the rules file's directory; one ending in '/' is a directory the file keeps its
//     name in.
import { basename, dirname, resolve } from 'node:path';
import { StasisError, type StasisErrorCode } from '../errors.js';
import { readRegularFile, unreadable } from '../util/fs.js';
import { insidePreopens, type Preopen } from '../wasi/state.js';

/** What a rule does; `exempt`: a restart never rolls the path back (as --rollback-exempt). */
export type FileAction = 'save' | 'skip' | 'log' | 'exempt';
export interface FileRule {
  action: FileAction;
  /** The pattern as the user wrote it (for messages). */
  pattern: string;
  /** The pattern after resolution (absolute, or a name-only glob): what is matched and saved. */
  resolved: string;
  /** Where it came from, for messages: "--ckpt-files" / "--no-ckpt-files" / "rules.txt:3". */
  source: string;
  /** New host path at restart: absolute; ending in '/' = a directory the file keeps its name in. */
  restartPath?: string;
  /** compiled matcher on an absolute, normalised host path */
  test(hostPath: string): boolean;
}

const ACTIONS: readonly string[] = ['save', 'skip', 'log', 'exempt'];
const VERB: Record<FileAction, string> = { save: 'saved', skip: 'not saved', log: 'treated as a log', exempt: 'exempt from rollback' };

/** Rules from the command line, in the order given. flags: [{action:'save'|'skip', pattern}] ; relative patterns containing '/' resolve against cwd. */
export function cliRules(flags: { action: 'save' | 'skip'; pattern: string }[], cwd: string): FileRule[] {
  return flags.map(({ action, pattern }) => {
    const source = action === 'save' ? '--ckpt-files' : '--no-ckpt-files';
    if (pattern === '') throw new StasisError('USAGE', `${source}: empty pattern; expected a file name or path glob`);
    return makeRule(action, pattern, source, cwd, undefined, 'USAGE');
  });
}

/** Parses a rules file's text; relative patterns/paths resolve against baseDir (the rules file's directory). */
export function parseRules(text: string, fileName: string, baseDir: string): FileRule[] {
  const rules: FileRule[] = [];
  text.split(/\r?\n/).forEach((line, n) => {
    const where = `${fileName}:${n + 1}`;
    const bad = (problem: string) => new StasisError('BAD_CONFIG', `${where}: ${problem}`);
    const fields = splitFields(line, bad);
    if (fields.length === 0) return;
    const [action, pattern, arrow, target, extra] = fields;
    if (!ACTIONS.includes(action.text)) {
      throw bad(`unknown action ${q(action.text)}; expected save, skip, log or exempt`);
    }
    if (!pattern || isArrow(pattern) || pattern.text === '') {
      throw bad(`missing pattern after ${q(action.text)}; expected ${action.text} PATTERN [-> RESTART_PATH]`);
    }
    if (arrow && !isArrow(arrow)) {
      throw bad(`unexpected ${q(arrow.text)} after the pattern; expected "-> RESTART_PATH" or nothing (quote a pattern with spaces)`);
    }
    if (arrow && action.text === 'exempt') throw bad('"exempt" takes no restart path; expected exempt PATTERN');
    if (arrow && (!target || target.text === '')) throw bad('"->" without a path; expected -> RESTART_PATH');
    if (extra) throw bad(`unexpected ${q(extra.text)} after the restart path; expected nothing more (quote a path with spaces)`);
    const restartPath = target && resolveKeepingSlash(baseDir, target.text);
    rules.push(makeRule(action.text as FileAction, pattern.text, where, baseDir, restartPath, 'BAD_CONFIG'));
  });
  return rules;
}

/** Reads and parses a rules file from disk (missing/unreadable -> StasisError BAD_CONFIG). */
export function loadRulesFile(path: string): FileRule[] {
  let text: string;
  try {
    text = readRegularFile(path).toString('utf8');
  } catch (e) {
    throw new StasisError('BAD_CONFIG', `${path}: cannot read rules file (${unreadable(e)}); expected a readable text file of save/skip/log rules`);
  }
  return parseRules(text, path, dirname(resolve(path)));
}

/** First rule whose pattern matches hostPath, or undefined. */
export function matchRule(rules: readonly FileRule[], hostPath: string): FileRule | undefined {
  return rules.find((rule) => rule.test(hostPath));
}

/** Throws StasisError('USAGE') when the same pattern (after resolution) is given different actions. */
export function checkConflicts(rules: readonly FileRule[]): void {
  const first = new Map<string, FileRule>();
  for (const rule of rules) {
    const key = rule.resolved;
    const earlier = first.get(key);
    if (!earlier) first.set(key, rule);
    else if (earlier.action !== rule.action) {
      throw new StasisError('USAGE', `${describe(earlier)} conflicts with ${describe(rule)}: a file can't be both ${VERB[earlier.action]} and ${VERB[rule.action]}`);
    }
  }
}

/** A restart path must lie inside the program's directories: a restart refuses an image that names one outside. */
export function checkRestartPaths(rules: readonly FileRule[], preopens: readonly Preopen[]): void {
  for (const rule of rules) {
    if (rule.restartPath === undefined || insidePreopens(rule.restartPath.replace(/\/$/, ''), preopens)) continue;
    throw new StasisError('BAD_CONFIG', `${describe(rule)} puts files at ${rule.restartPath} at restart, outside every --dir of the program (${preopens.map((p) => p.host).join(', ') || 'none'}); a restart path must be inside one of them`);
  }
}

/** --rollback-exempt patterns, checked and resolved against cwd as --ckpt-files ones are. */
export function exemptPatterns(patterns: readonly string[], cwd: string): string[] {
  return patterns.map((pattern) => {
    if (pattern === '') throw new StasisError('USAGE', '--rollback-exempt: empty pattern; expected a file name or path glob');
    return makeRule('skip', pattern, '--rollback-exempt', cwd, undefined, 'USAGE').resolved;
  });
}

/** For exempt patterns (resolved): the one a path, or a directory above it, matches; undefined if none. */
export function exemptMatcher(resolved: readonly string[]): (hostPath: string) => string | undefined {
  const rules = resolved.map((p) => makeRule('skip', p, '--rollback-exempt', '/', undefined, 'BAD_CONFIG'));
  return (hostPath) => {
    for (let p = hostPath; p !== dirname(p); p = dirname(p)) {
      const hit = rules.find((r) => r.test(p));
      if (hit !== undefined) return hit.resolved;
    }
    return undefined;
  };
}

/** Where a matched file goes at restart given rule.restartPath ('/'-ending = dir + basename). */
export function restartPathFor(rule: FileRule, hostPath: string): string | undefined {
  const to = rule.restartPath;
  if (to === undefined) return undefined;
  return to.endsWith('/') ? to + basename(hostPath) : to;
}

function makeRule(action: FileAction, pattern: string, source: string, baseDir: string,
  restartPath: string | undefined, errorCode: StasisErrorCode): FileRule {
  const nameOnly = !pattern.includes('/');
  const resolved = nameOnly ? pattern : resolve(baseDir, pattern);
  let regex: RegExp;
  try {
    regex = globToRegExp(resolved);
  } catch (e) {
    throw new StasisError(errorCode, `${source}: ${(e as Error).message} in pattern ${q(pattern)}; ${GLOB_HINT}`);
  }
  const rule: FileRule = {
    action, pattern, source, resolved,
    ...(restartPath !== undefined && { restartPath }),
    test: nameOnly ? (hostPath) => regex.test(basename(hostPath)) : (hostPath) => regex.test(hostPath),
  };
  return rule;
}

/** A rule as plain data (kept in images so a restarted program checkpoints the same way). */
export interface RuleData { action: Exclude<FileAction, 'exempt'>; pattern: string; source: string; restartPath?: string }

export function ruleData(r: FileRule): RuleData {
  if (r.action === 'exempt') throw new TypeError('an exempt rule is kept as a rollbackExempt pattern, not as a rule');
  return { action: r.action, pattern: r.resolved, source: r.source, ...(r.restartPath !== undefined && { restartPath: r.restartPath }) };
}

/** Compiles a rule saved by ruleData (its pattern is already resolved). */
export function compileRule(d: RuleData): FileRule {
  return makeRule(d.action, d.pattern, d.source, '/', d.restartPath, 'BAD_CONFIG');
}

const GLOB_HINT = 'expected a glob of * ? ** [abc] [a-z] [!abc] (write \\[ for a literal [)';

/** A name-only pattern becomes a regex for one name; a path pattern, for a whole absolute path. */
function globToRegExp(pattern: string): RegExp {
  if (!pattern.includes('/')) return new RegExp(`^${componentSource(pattern)}$`, 'u');
  const parts = pattern.split('/').filter((part) => part !== '');
  const source = parts.map((part, i) =>
    part !== '**' ? '/' + componentSource(part) : i === parts.length - 1 ? '(?:/[^/]+)+' : '(?:/[^/]+)*');
  return new RegExp(`^${source.join('') || '/'}$`, 'u');
}

/** Regex source for one path component. Iterates code points, so ? matches one emoji. */
function componentSource(glob: string): string {
  const chars = Array.from(glob);
  let out = '';
  for (let i = 0; i < chars.length; ) {
    const c = chars[i++];
    if (c === '*') {
      if (!out.endsWith('[^/]*')) out += '[^/]*'; // more stars in a row add only backtracking
    } else if (c === '?') out += '[^/]';
    else if (c === '[') {
      const [source, end] = classSource(chars, i);
      out += source;
      i = end;
    } else if (c === '\\' && i < chars.length) out += escapeRegExp(chars[i++]);
    else out += escapeRegExp(c); // includes a lone trailing '\'
  }
  return out;
}

/** Regex source for a [...] class whose body starts at chars[start], and the index after its ']'.
 *  A ']' first in the class is literal (POSIX). */
function classSource(chars: string[], start: number): [string, number] {
  let i = start;
  const negate = chars[i] === '!';
  if (negate) i++;
  let body = '';
  for (let first = true; ; first = false) {
    if (i >= chars.length) throw new Error('unbalanced "["');
    let lo = chars[i++];
    if (lo === ']' && !first) break;
    if (lo === '\\' && i < chars.length) lo = chars[i++];
    if (chars[i] === '-' && i + 1 < chars.length && chars[i + 1] !== ']') {
      let hi = chars[i + 1];
      i += 2;
      if (hi === '\\' && i < chars.length) hi = chars[i++];
      if (hi.codePointAt(0)! < lo.codePointAt(0)!) throw new Error(`character range "${lo}-${hi}" out of order`);
      body += escapeInClass(lo) + '-' + escapeInClass(hi);
    } else body += escapeInClass(lo);
  }
  return [negate ? `[^/${body}]` : `[${body}]`, i];
}

const escapeRegExp = (c: string) => c.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
const escapeInClass = (c: string) => c.replace(/[\\\]\[^-]/g, '\\$&');
const q = (s: string) => JSON.stringify(s);
const isArrow = (field: Field) => field.text === '->' && !field.quoted;

function describe(rule: FileRule): string {
  return rule.source.startsWith('--') ? `${rule.source} ${rule.pattern}` : `${rule.action} ${rule.pattern} (${rule.source})`;
}

/** path.resolve, but a trailing '/' (meaning "a directory") survives. */
function resolveKeepingSlash(baseDir: string, path: string): string {
  const resolved = resolve(baseDir, path);
  return path.endsWith('/') && !resolved.endsWith('/') ? resolved + '/' : resolved;
}

interface Field { text: string; quoted: boolean }

/** Splits a rules-file line into whitespace-separated fields, honouring "quotes" and # comments. */
function splitFields(line: string, bad: (problem: string) => Error): Field[] {
  const fields: Field[] = [];
  const isSpace = (c: string) => c === ' ' || c === '\t' || c === '\f' || c === '\v';
  let i = 0;
  while (i < line.length) {
    if (isSpace(line[i])) { i++; continue; }
    if (line[i] === '#') break;
    let text = '';
    let quoted = false;
    while (i < line.length && !isSpace(line[i])) {
      if (line[i] !== '"') { text += line[i++]; continue; }
      quoted = true;
      for (i++; ; ) {
        if (i >= line.length) throw bad('unterminated quote; expected a closing "');
        const c = line[i++];
        if (c === '"') break;
        text += c === '\\' && (line[i] === '"' || line[i] === '\\') ? line[i++] : c;
      }
    }
    fields.push({ text, quoted });
  }
  return fields;
}
