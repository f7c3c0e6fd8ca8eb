import { ERRNO_NAMES, Errno } from './constants.js';

/** Thrown inside the host to end a WASI call with an errno; caught at the import boundary. */
export class WasiError extends Error {
  constructor(readonly errno: number) {
    super(`wasi errno ${ERRNO_NAMES[errno] ?? errno}`);
  }
}

/** Host error codes (Node's `err.code`) that map onto WASI errnos by name. */
const HOST_CODES = new Map<string, number>();
ERRNO_NAMES.forEach((name, value) => {
  if (value > 0 && !/^\d/.test(name)) HOST_CODES.set('E' + name.toUpperCase(), value);
});
HOST_CODES.set('E2BIG', Errno.TOOBIG);
HOST_CODES.set('EOPNOTSUPP', Errno.NOTSUP);
HOST_CODES.set('EWOULDBLOCK', Errno.AGAIN);
HOST_CODES.set('ENOTSUP', Errno.NOTSUP);

/** The WASI errno for anything thrown while serving a call. Unknown failures are EIO. */
export function errnoOf(err: unknown): number {
  if (err instanceof WasiError) return err.errno;
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string') return HOST_CODES.get(code) ?? Errno.IO;
  if (err instanceof RangeError) return Errno.FAULT; // guest pointer outside memory
  throw err; // a bug in the host, or a ProcExit: not the guest's errno to see
}
