import assert from 'node:assert/strict';
import { test } from 'node:test';
import { PathStates } from '../src/files/path-states.js';

const at = (host: string, path: string) => ({ fd: -1, host, path });
const entries = (s: PathStates): [string, number][] => [...s.byDir()].flatMap(([dir, names]) => [...names].map(([n, v]): [string, number] => [`${dir}/${n}`, v])).sort();

test('one place has one key, whichever directory handle it is reached through', () => {
  const s = new PathStates();
  s.setAt(at('/data', 'sub/x'), 1);
  assert.equal(s.getAt(at('/data/sub', 'x')), 1);
  assert.equal(s.get('/data/sub/x'), 1);
  s.setAt(at('/data/sub', ''), 2); // the directory itself, through its own handle
  assert.equal(s.getAt(at('/data', 'sub')), 2);
  s.setAt(at('/', 'top'), 3); // below the root directory
  assert.equal(s.get('/top'), 3);
  assert.equal(s.getAt(at('/', 'top')), 3);
  assert.equal(s.size, 3);
  s.setAt(at('/data', 'sub/x'), 4); // replaced, not added
  assert.equal(s.size, 3);
  assert.deepEqual(entries(s), [['/data/sub', 2], ['/data/sub/x', 4], ['/top', 3]]);
});

test('takeBelow takes the paths below a directory, not the directory itself nor its namesakes', () => {
  const s = new PathStates();
  for (const p of ['/d/a', '/d/a/b', '/d/a/b/c', '/d/ab/x', '/d/a2']) s.set(p, 1);
  assert.deepEqual(s.takeBelow('/d/a').map(([p]) => p).sort(), ['/d/a/b', '/d/a/b/c']);
  assert.deepEqual(entries(s).map(([p]) => p), ['/d/a', '/d/a2', '/d/ab/x']);
  assert.equal(s.size, 3);
});

test('a place looked up and then set lands in its directory however the directory came to be known meanwhile', () => {
  const s = new PathStates();
  const a = at('/d', 'x');
  assert.equal(s.getAt(a), undefined); // nothing known in /d yet
  s.set('/d/y', 1); // /d becomes known by another way
  s.setAt(a, 2);
  assert.equal(s.get('/d/x'), 2);
  assert.equal(s.get('/d/y'), 1);
  s.takeBelow('/d'); // everything below /d goes
  assert.equal(s.getAt(a), undefined);
  s.setAt(a, 3);
  assert.deepEqual(entries(s), [['/d/x', 3]]);
});
