// Blocking waits of the guest's thread (poll_oneoff sleeps, stdin) that a checkpoint request
// must cut short: the call then throws Interrupted, the engine unwinds at it, and after the
// rewind the call is made again from the start.

/** Thrown by a blocking call that was cut short by a checkpoint request. */
export class Interrupted extends Error {
  constructor() {
    super('interrupted by a checkpoint request');
  }
}

let word: Int32Array | null = null;
let index = 0;
let seen = 0;
const sleepCell = new Int32Array(new SharedArrayBuffer(4));

/** Watch word[i] (the request counter); `value` is the last request already served. */
export function setInterruptWord(w: Int32Array, i: number, value: number): void {
  word = w;
  index = i;
  seen = value;
}

/** Whether a request can cut a wait short (a word is watched: the program is under checkpoint control). */
export function interruptible(): boolean {
  return word !== null;
}

export function interruptPending(): boolean {
  return word !== null && Atomics.load(word, index) !== seen;
}

/** Sleeps for ms (fractions allowed); throws Interrupted if a request comes first. */
export function sleep(ms: number): void {
  if (!(ms > 0)) return;
  if (word === null) {
    Atomics.wait(sleepCell, 0, 0, ms);
    return;
  }
  if (Atomics.wait(word, index, seen, ms) !== 'timed-out') throw new Interrupted();
}

/** Sleeps for ms whatever happens (for short waits that must not be cut, e.g. EAGAIN). */
export function pause(ms: number): void {
  Atomics.wait(sleepCell, 0, 0, ms);
}
