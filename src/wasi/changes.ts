// What the host tells a listener before it changes a file's bytes. A checkpoint that is still
// copying a big file listens (files/guard.ts), so that it copies a block before the program
// overwrites it; the host itself does not know who listens.

export interface FileChangeHooks {
  /** False while nobody listens: the write paths skip the calls. */
  readonly active: boolean;
  /** Before [pos, pos + len) of the file open as host fd `handle` is written. */
  beforeWrite(handle: number, pos: number, len: number): void;
  /** Before the file open as host fd `handle` is cut to `size` bytes. */
  beforeTruncate(handle: number, size: number): void;
  /** Before the file with identity "dev:ino" is truncated some other way (an open with O_TRUNC). */
  beforeTruncateFile(id: string): void;
}

export const NO_CHANGE_HOOKS: FileChangeHooks = {
  active: false,
  beforeWrite() {},
  beforeTruncate() {},
  beforeTruncateFile() {},
};
