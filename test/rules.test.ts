// File rules (src/files/rules.ts): the glob matcher, the rules-file parser, command-line rules,
// first-match-wins, restart paths, conflicts, and every error message.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { StasisError } from '../src/errors.js';
import {
  checkConflicts, cliRules, loadRulesFile, matchRule, parseRules, restartPathFor, type FileRule,
} from '../src/files/rules.js';
import { tempDir } from './helpers.js';

/** One rule from the command line, resolved against /cwd. */
function glob(pattern: string, cwd = '/cwd'): FileRule {
  return cliRules([{ action: 'save', pattern }], cwd)[0];
}

/** Asserts which of the paths the pattern matches and which it doesn't. */
function matches(pattern: string, yes: string[], no: string[], cwd = '/cwd'): void {
  const rule = glob(pattern, cwd);
  for (const p of yes) assert.equal(rule.test(p), true, `${pattern} should match ${p}`);
  for (const p of no) assert.equal(rule.test(p), false, `${pattern} should not match ${p}`);
}

/** Asserts fn throws a one-line StasisError with this code and a message matching re. */
function throwsStasis(fn: () => unknown, code: 'BAD_CONFIG' | 'USAGE', re: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof StasisError, `expected a StasisError, got ${String(e)}`);
    assert.equal(e.code, code);
    assert.equal(e.exitCode, code === 'BAD_CONFIG' ? 78 : 64);
    assert.match(e.message, re);
    assert.ok(!e.message.includes('\n'), `message is one line: ${JSON.stringify(e.message)}`);
    return true;
  });
}

test('a pattern without / matches the name only, in any directory', () => {
  matches('*.log', ['/a/b/x.log', '/x.log', '/cwd/.log', '/a/b.log/c.log'], ['/a/x.log/y', '/a/x.logs', '/a/xlog']);
  matches('data.db', ['/data.db', '/srv/app/data.db'], ['/srv/app/data.dbx', '/srv/data.db/x', '/srv/mydata.db']);
});

test('* and ? do not cross /', () => {
  matches('/a/*', ['/a/b', '/a/.hidden'], ['/a', '/a/b/c']);
  matches('/a/*/c', ['/a/b/c', '/a/xyz/c'], ['/a/c', '/a/b/b/c']);
  matches('/a/f?.txt', ['/a/f1.txt', '/a/fé.txt', '/a/f😀.txt'], ['/a/f.txt', '/a/f12.txt', '/a/f/.txt']);
  matches('x*y*z', ['/p/xyz', '/p/xaybz'], ['/p/xzy', '/p/axyz']);
});

test('** in the middle matches zero or more components', () => {
  matches('/a/**/x', ['/a/x', '/a/b/x', '/a/b/c/x'], ['/a', '/a/bx', '/b/a/x', '/a/b/x/y']);
  matches('/**/x.db', ['/x.db', '/srv/x.db', '/srv/a/b/x.db'], ['/srv/y.db', '/x.dbb']);
});

test('** at the end matches everything below, not the directory itself', () => {
  matches('/a/**', ['/a/b', '/a/b/c', '/a/.x/y'], ['/a', '/ab', '/b/a/c']);
});

test('** alone matches every file; /** every path', () => {
  matches('**', ['/x', '/a/b/c.txt'], []);
  matches('/**', ['/x', '/a/b/c.txt'], []);
  matches('a**b', ['/q/ab', '/q/axxb'], ['/q/a/b', '/q/ba']); // not a whole component: like *
});

test('character classes: sets, ranges, negation, literal ] first', () => {
  matches('f[abc].txt', ['/f/fa.txt', '/fc.txt'], ['/fd.txt', '/f.txt', '/fab.txt']);
  matches('f[a-c0-9].txt', ['/fb.txt', '/f7.txt'], ['/fd.txt', '/f-.txt']);
  matches('f[!abc].txt', ['/fd.txt', '/f-.txt'], ['/fa.txt', '/f.txt']);
  matches('/d/[!x]/f', ['/d/y/f'], ['/d/x/f', '/d//f', '/d/f']);
  matches('/d/a[!x]b', ['/d/ayb'], ['/d/axb', '/d/a/b']); // a negated class never matches /
  matches('f[]x].txt', ['/f].txt', '/fx.txt'], ['/fy.txt']);
  matches('f[!]].txt', ['/fy.txt'], ['/f].txt']);
  matches('f[a-].txt', ['/fa.txt', '/f-.txt'], ['/fb.txt']); // a trailing - is literal
  matches('f[\\]\\\\].txt', ['/f].txt', '/f\\.txt'], ['/fx.txt']);
});

test('backslash escapes; regex specials are literal', () => {
  matches('f\\*.txt', ['/f*.txt'], ['/fa.txt', '/f.txt']);
  matches('f\\?', ['/f?'], ['/fa']);
  matches('\\[x]', ['/[x]'], ['/x']);
  matches('a.b+(c)|d^$', ['/a.b+(c)|d^$'], ['/aXb+(c)|d^$', '/abbc']);
  matches('/a/{b,c}', ['/a/{b,c}'], ['/a/b', '/a/c']);
  matches('back\\', ['/back\\'], ['/back']); // a trailing \ is itself
});

test('relative path patterns resolve against cwd, keeping glob characters', () => {
  matches('data/*.db', ['/home/u/data/a.db'], ['/data/a.db', '/home/u/a.db'], '/home/u');
  matches('./data/*.db', ['/home/u/data/a.db'], ['/home/u/x/data/a.db'], '/home/u');
  matches('../logs/**', ['/home/logs/a', '/home/logs/b/c'], ['/home/u/logs/a'], '/home/u');
  matches('/abs//dir/./f', ['/abs/dir/f'], ['/home/u/abs/dir/f'], '/home/u');
  matches('dir/', ['/home/u/dir'], ['/home/u/dir/x'], '/home/u');
  assert.equal(glob('./data/*.db').pattern, './data/*.db', 'pattern keeps the user\'s spelling');
});

test('cliRules keeps order and sources; first match wins', () => {
  const rules = cliRules([
    { action: 'skip', pattern: 'secret.db' },
    { action: 'save', pattern: '*.db' },
  ], '/w');
  assert.deepEqual(rules.map((r) => [r.action, r.pattern, r.source, r.restartPath]), [
    ['skip', 'secret.db', '--no-ckpt-files', undefined],
    ['save', '*.db', '--ckpt-files', undefined],
  ]);
  assert.equal(matchRule(rules, '/w/secret.db'), rules[0]);
  assert.equal(matchRule(rules, '/w/other.db'), rules[1]);
  assert.equal(matchRule(rules, '/w/other.txt'), undefined);
  assert.equal(matchRule([], '/w/x'), undefined);
  // The other order: *.db now shadows secret.db.
  const reversed = [rules[1], rules[0]];
  assert.equal(matchRule(reversed, '/w/secret.db'), rules[1]);
});

test('parseRules: actions, comments, blank lines, whitespace, sources', () => {
  const rules = parseRules([
    '# which files to save',
    '',
    '   save   *.db   ',
    '\tskip\t/tmp/**\t# scratch files',
    'log app.log',
    'save a#b',
    '   # indented comment',
  ].join('\r\n'), 'rules.txt', '/etc/app');
  assert.deepEqual(rules.map((r) => [r.action, r.pattern, r.source]), [
    ['save', '*.db', 'rules.txt:3'],
    ['skip', '/tmp/**', 'rules.txt:4'],
    ['log', 'app.log', 'rules.txt:5'],
    ['save', 'a#b', 'rules.txt:6'],
  ]);
  assert.equal(matchRule(rules, '/tmp/x/y.db'), rules[0], 'first match wins within a file');
  assert.equal(matchRule(rules, '/tmp/x/y.txt'), rules[1]);
  assert.equal(matchRule(rules, '/var/log/app.log'), rules[2]);
  assert.equal(matchRule(rules, '/q/a#b'), rules[3]);
  assert.deepEqual(parseRules('', 'empty', '/'), []);
  assert.deepEqual(parseRules('# only\n\n  \n', 'empty', '/'), []);
});

test('parseRules resolves relative patterns and restart paths against baseDir', () => {
  const rules = parseRules('save data/*.db -> ../moved/\nlog ./logs/app.log -> /var/log/new.log\nskip x -> y',
    'r', '/etc/app');
  assert.equal(rules[0].test('/etc/app/data/a.db'), true);
  assert.equal(rules[0].test('/cwd/data/a.db'), false);
  assert.equal(rules[0].restartPath, '/etc/moved/');
  assert.equal(rules[1].test('/etc/app/logs/app.log'), true);
  assert.equal(rules[1].restartPath, '/var/log/new.log');
  assert.equal(rules[2].action, 'skip');
  assert.equal(rules[2].restartPath, '/etc/app/y');
});

test('restartPathFor: file form, directory form, none', () => {
  const [toFile, toDir, toRoot, none] = parseRules(
    'save *.db -> /new/place.db\nsave *.log -> logs/\nsave *.x -> /\nsave *.y', 'r', '/base');
  assert.equal(restartPathFor(toFile, '/old/a.db'), '/new/place.db');
  assert.equal(toDir.restartPath, '/base/logs/');
  assert.equal(restartPathFor(toDir, '/old/dir/app.log'), '/base/logs/app.log');
  assert.equal(restartPathFor(toRoot, '/old/q.x'), '/q.x');
  assert.equal(restartPathFor(none, '/old/q.y'), undefined);
  assert.equal('restartPath' in none, false);
});

test('quoting: spaces, escapes, quoted ->, glob escapes survive', () => {
  const rules = parseRules([
    'save "my file.db" -> "/new dir/"',
    'save "say \\"hi\\".txt"',
    'save "back\\\\slash"',
    'save "->"',
    'save "lit\\*"',
    'save pre"fix and"post',
    'skip ""x',
  ].join('\n'), 'q.rules', '/b');
  assert.equal(rules[0].pattern, 'my file.db');
  assert.equal(rules[0].test('/a/my file.db'), true);
  assert.equal(restartPathFor(rules[0], '/a/my file.db'), '/new dir/my file.db');
  assert.equal(rules[1].pattern, 'say "hi".txt');
  assert.equal(rules[1].test('/say "hi".txt'), true);
  assert.equal(rules[2].pattern, 'back\\slash');
  assert.equal(rules[2].test('/backslash'), true, '\\s in the glob is s');
  assert.equal(rules[3].pattern, '->');
  assert.equal(rules[3].test('/x/->'), true);
  assert.equal(rules[4].test('/lit*'), true);
  assert.equal(rules[4].test('/litx'), false);
  assert.equal(rules[5].pattern, 'prefix andpost');
  assert.equal(rules[6].pattern, 'x');
});

test('rules-file errors: BAD_CONFIG, one line, FILE:LINE, what is wrong and what is expected', () => {
  const parse = (text: string) => () => parseRules(text, 'rules.txt', '/b');
  throwsStasis(parse('save a\nsav *.db'), 'BAD_CONFIG', /^rules\.txt:2: unknown action "sav"; expected save, skip, log or exempt$/);
  throwsStasis(parse('SAVE x'), 'BAD_CONFIG', /^rules\.txt:1: unknown action "SAVE"/);
  throwsStasis(parse('# c\n\nskip'), 'BAD_CONFIG', /^rules\.txt:3: missing pattern after "skip"; expected skip PATTERN \[-> RESTART_PATH\]$/);
  throwsStasis(parse('save -> /x'), 'BAD_CONFIG', /^rules\.txt:1: missing pattern after "save"/);
  throwsStasis(parse('save ""'), 'BAD_CONFIG', /^rules\.txt:1: missing pattern/);
  throwsStasis(parse('save my file.db'), 'BAD_CONFIG', /^rules\.txt:1: unexpected "file\.db" after the pattern; expected "-> RESTART_PATH"/);
  throwsStasis(parse('save a.db ->'), 'BAD_CONFIG', /^rules\.txt:1: "->" without a path; expected -> RESTART_PATH$/);
  throwsStasis(parse('save a.db -> # no path'), 'BAD_CONFIG', /^rules\.txt:1: "->" without a path/);
  throwsStasis(parse('save a.db -> ""'), 'BAD_CONFIG', /^rules\.txt:1: "->" without a path/);
  throwsStasis(parse('save a.db -> /x /y'), 'BAD_CONFIG', /^rules\.txt:1: unexpected "\/y" after the restart path; expected nothing more/);
  throwsStasis(parse('\n\n\nlog "open.log'), 'BAD_CONFIG', /^rules\.txt:4: unterminated quote; expected a closing "$/);
  throwsStasis(parse('save "a\\"'), 'BAD_CONFIG', /^rules\.txt:1: unterminated quote/);
  throwsStasis(parse('save data/[ab.db'), 'BAD_CONFIG',
    /^rules\.txt:1: unbalanced "\[" in pattern "data\/\[ab\.db"; expected a glob of .*\\\[ for a literal \[/);
  throwsStasis(parse('save x\nskip f[z-a]'), 'BAD_CONFIG', /^rules\.txt:2: character range "z-a" out of order in pattern "f\[z-a\]"; expected/);
  throwsStasis(parse('save [!'), 'BAD_CONFIG', /^rules\.txt:1: unbalanced "\["/);
  throwsStasis(parse('save []'), 'BAD_CONFIG', /^rules\.txt:1: unbalanced "\["/);
});

test('command-line errors are USAGE', () => {
  throwsStasis(() => cliRules([{ action: 'save', pattern: 'ok' }, { action: 'skip', pattern: 'a[b' }], '/c'), 'USAGE',
    /^--no-ckpt-files: unbalanced "\[" in pattern "a\[b"; expected/);
  throwsStasis(() => cliRules([{ action: 'save', pattern: '' }], '/c'), 'USAGE', /^--ckpt-files: empty pattern; expected/);
});

test('checkConflicts: same resolved pattern with different actions', () => {
  const cli = cliRules([
    { action: 'save', pattern: 'data/*.db' },
    { action: 'skip', pattern: 'data/*.db' },
  ], '/w');
  throwsStasis(() => checkConflicts(cli), 'USAGE',
    /^--ckpt-files data\/\*\.db conflicts with --no-ckpt-files data\/\*\.db: a file can't be both saved and not saved$/);
  // Spelled differently, resolved the same.
  const spelled = cliRules([
    { action: 'skip', pattern: './data/*.db' },
    { action: 'save', pattern: '/w/data/../data/*.db' },
  ], '/w');
  throwsStasis(() => checkConflicts(spelled), 'USAGE', /--no-ckpt-files \.\/data\/\*\.db conflicts with --ckpt-files \/w\/data\/\.\.\/data\/\*\.db: a file can't be both not saved and saved/);
  // Command line against the rules file.
  const mixed = [...cliRules([{ action: 'save', pattern: '*.log' }], '/w'), ...parseRules('\nlog *.log', 'r.txt', '/etc')];
  throwsStasis(() => checkConflicts(mixed), 'USAGE', /^--ckpt-files \*\.log conflicts with log \*\.log \(r\.txt:2\): a file can't be both saved and treated as a log$/);
});

test('checkConflicts: no conflict for the same action, or for patterns that resolve differently', () => {
  checkConflicts([]);
  checkConflicts(cliRules([{ action: 'save', pattern: '*.db' }, { action: 'save', pattern: '*.db' }], '/w'));
  // data/*.db from /w and from the rules file's /etc are different paths.
  checkConflicts([...cliRules([{ action: 'save', pattern: 'data/*.db' }], '/w'), ...parseRules('skip data/*.db', 'r', '/etc')]);
  // A name pattern and a path pattern are different even if they'd match the same file.
  checkConflicts(cliRules([{ action: 'save', pattern: 'a.db' }, { action: 'skip', pattern: '/w/a.db' }], '/w'));
  checkConflicts(parseRules('save *.db\nskip *.DB\nlog *.db.log', 'r', '/'));
});

test('loadRulesFile reads from disk, resolving against the file\'s directory', () => {
  const { dir, cleanup } = tempDir('stasis-rules-');
  try {
    mkdirSync(join(dir, 'conf'));
    const file = join(dir, 'conf', 'rules.txt');
    writeFileSync(file, '# state\nsave state/*.db -> out/\n');
    const rules = loadRulesFile(file);
    assert.equal(rules.length, 1);
    assert.equal(rules[0].source, `${file}:2`);
    assert.equal(rules[0].test(join(dir, 'conf', 'state', 'a.db')), true);
    assert.equal(rules[0].test(join(dir, 'state', 'a.db')), false);
    assert.equal(rules[0].restartPath, join(dir, 'conf', 'out') + '/');

    writeFileSync(file, 'save ok\nbogus x\n');
    throwsStasis(() => loadRulesFile(file), 'BAD_CONFIG', new RegExp(`^${escape(file)}:2: unknown action "bogus"`));
    throwsStasis(() => loadRulesFile(join(dir, 'missing.txt')), 'BAD_CONFIG',
      new RegExp(`^${escape(join(dir, 'missing.txt'))}: cannot read rules file \\(no such file\\); expected`));
    throwsStasis(() => loadRulesFile(join(dir, 'conf')), 'BAD_CONFIG', /: cannot read rules file \(it is a directory\)/);
  } finally {
    cleanup();
  }
});

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
