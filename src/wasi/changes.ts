// What the host tells a listener before it changes the file system. A checkpoint that is still
// copying a big file listens (files/guard.ts), so that it copies a block before the program
// overwrites it; the undo journal listens (files/journal.ts), so that a restart can undo what
// the program changed since its checkpoint. The host itself does not know who listens.
// Places are beneath a directory handle, as the kernel is given them (beneath.ts).
import type { At } from './beneath.js';

export interface FileChangeHooks {
  /** False while nobody listens: the host skips the calls. */
  readonly active: boolean;
  /** Before [pos, pos + len) of the file open as host fd `handle` is written. */
  beforeWrite(handle: number, pos: number, len: number): void;
  /** Before the file open as host fd `handle` is cut (or extended) to `size` bytes. */
  beforeTruncate(handle: number, size: number): void;
  /** Before the file with identity "dev:ino" at `path` is truncated some other way (an open
   *  with O_TRUNC). */
  beforeTruncateFile(id: string, path: string): void;
  /** A file was opened as host fd `handle` by `path` (a restart's reopened files too);
   *  `created`: the open made it (O_CREAT|O_EXCL). */
  opened?(handle: number, path: string, created?: boolean): void;
  /** Host fd `handle` was closed. */
  closed?(handle: number): void;
  /** Before something may be created at `at`: a file (an open with O_CREAT), a directory, a
   *  symlink, or a hard link (a new name for an existing file, not a new file). */
  beforeCreate?(at: At, made: 'file' | 'dir' | 'symlink' | 'link'): void;
  /** Before the file, symlink or (empty) directory at `at` is removed. */
  beforeRemove?(at: At): void;
  /** Renames `from` to `to` (which it may replace) in the host's stead, having recorded it:
   *  `rename(false)` makes the change; `rename(true)` (only where renameNoReplaceAvailable)
   *  fails with EEXIST instead of replacing something at `to` (EINVAL where its file system
   *  cannot tell). Throws what the rename the host asked for throws. */
  rename?(from: At, to: At, rename: (noReplace: boolean) => void): void;
  /** The change announced last (create, remove) failed: nothing of it happened. */
  failed?(): void;
  /** Before the timestamps of what `at` names (or host fd `handle` is open on) are set. */
  beforeSetTimes?(target: At | number): void;
}

export const NO_CHANGE_HOOKS: FileChangeHooks = {
  active: false,
  beforeWrite() {},
  beforeTruncate() {},
  beforeTruncateFile() {},
};
