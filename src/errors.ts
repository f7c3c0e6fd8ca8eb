// Errors Stasis reports to its user. Each has a stable code and its own exit status, so a
// script can tell a usage mistake from a bad module from a missing directory.

/** Exit statuses of the `stasis` command itself (the program's own status passes through). */
export const EXIT = {
  USAGE: 64, // unknown option, missing argument
  BAD_MODULE: 65, // not a WebAssembly binary, or an invalid one
  NOT_FOUND: 66, // the module file does not exist or cannot be read
  UNSUPPORTED: 67, // valid wasm, but not a WASI preview-1 command Stasis can run
  BAD_DIR: 68, // a --dir host path that is missing or not a directory
  NO_TARGET: 69, // checkpoint/status/kill: no such running program
  CONTROL: 71, // the running program could not be reached or failed the request
  BAD_IMAGE: 72, // restart/inspect: not an image (missing, foreign, or a newer format)
  MISSING_FILE: 74, // restart: a file the program had open is no longer there
  CORRUPT_IMAGE: 73, // an image file is damaged: truncated, or its hash (module, memory, manifest, saved file) does not match
  FILE_CHANGED: 76, // restart: a file differs from its saved copy, or a log is shorter than at checkpoint
  FILE_ACCESS: 77, // a file or directory it must use is not accessible or not safe (permissions, not a file, not private)
  BAD_CONFIG: 78, // a --file-rules file or a --plugin that cannot be used
  MISMATCH: 79, // launch --resume: the checkpoint directory's image is of another program, or other arguments
  INTERNAL: 70, // a bug in Stasis
  TRAP: 134, // the program trapped (128 + SIGABRT, as a native abort() would)
} as const;

export type StasisErrorCode =
  | 'USAGE' | 'BAD_MODULE' | 'NOT_FOUND' | 'UNSUPPORTED' | 'BAD_DIR' | 'INTERNAL'
  | 'NO_TARGET' | 'CONTROL' | 'BAD_IMAGE' | 'CORRUPT_IMAGE' | 'MISSING_FILE' | 'FILE_CHANGED'
  | 'FILE_ACCESS' | 'BAD_CONFIG' | 'MISMATCH';

export class StasisError extends Error {
  readonly exitCode: number;
  constructor(
    readonly code: StasisErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'StasisError';
    this.exitCode = EXIT[code];
  }
}

export type ImageErrorCode =
  /** The path is not a Stasis image or checkpoint directory (a foreign file or directory). */
  | 'NOT_AN_IMAGE'
  /** A Stasis image in a format this version cannot read (written by a newer Stasis). */
  | 'BAD_VERSION'
  /** A file of the image is damaged: wrong hash, truncated, unparsable. */
  | 'CORRUPT'
  /** The path, the requested generation, or a file the image references does not exist. */
  | 'MISSING'
  /** Another process is writing to the same checkpoint directory right now. */
  | 'BUSY';

const IMAGE_ERROR_CODE: Record<ImageErrorCode, StasisErrorCode> = {
  NOT_AN_IMAGE: 'BAD_IMAGE', BAD_VERSION: 'BAD_IMAGE', MISSING: 'BAD_IMAGE', CORRUPT: 'CORRUPT_IMAGE', BUSY: 'CONTROL',
};

/** An error of the image store: `reason` says what is wrong with the image, `code` how the CLI exits. */
export class ImageError extends StasisError {
  constructor(
    readonly reason: ImageErrorCode,
    message: string,
    /** The file or directory the error is about, when there is one. */
    readonly file?: string,
  ) {
    super(IMAGE_ERROR_CODE[reason], message);
    this.name = 'ImageError';
  }
}
