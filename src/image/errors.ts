// Errors of the image store. The CLI maps `code` to an exit status and prints `message` as one
// line, so every message says what is wrong, where, and what to do about it.

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

export class ImageError extends Error {
  constructor(
    readonly code: ImageErrorCode,
    message: string,
    /** The file or directory the error is about, when there is one. */
    readonly file?: string,
  ) {
    super(message);
    this.name = 'ImageError';
  }
}
