// Which images this user's Stasis wrote. An image names host directories (the program's
// --dir's); a restart gives the program those directories only if the image is one of ours,
// since an image from elsewhere (shared storage, an export file) could name any directory.
// Ours are remembered by their manifest's sha256, one line each, in a file of the user's
// state directory (shared with every node that shares the home directory).
import { appendFileSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

/** Past this size the older half of the record is dropped (old images are restarted rarely). */
const RECORD_LIMIT = 4 << 20;

function recordFile(): string {
  const state = process.env.XDG_STATE_HOME || join(homedir(), '.local', 'state');
  return join(state, 'stasis', 'written-images');
}

/** Remembers an image this process wrote. Best effort: without it, a restart needs --dir. */
export function rememberWritten(manifestSha256: string): void {
  const file = recordFile();
  try {
    mkdirSync(join(file, '..'), { recursive: true, mode: 0o700 });
    const size = statSync(file, { throwIfNoEntry: false })?.size ?? 0;
    if (size > RECORD_LIMIT) {
      const text = readFileSync(file, 'utf8');
      writeFileSync(file, text.slice(text.indexOf('\n', text.length >> 1) + 1), { mode: 0o600 });
    }
    appendFileSync(file, manifestSha256 + '\n', { mode: 0o600 });
  } catch {
    // A read-only home: images from here are then treated as from elsewhere.
  }
}

/** Whether this user's Stasis wrote the image whose manifest has this sha256. */
export function writtenHere(manifestSha256: string): boolean {
  try {
    return readFileSync(recordFile(), 'utf8').includes(manifestSha256 + '\n');
  } catch {
    return false;
  }
}
