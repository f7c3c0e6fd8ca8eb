// The instrumenter's refusal (no binaryen: the byte-level last step throws it too).

/** A module the instrumenter refuses; the message says why. */
export class UnsupportedModuleError extends Error {
  readonly code = 'UNSUPPORTED' as const;
  constructor(message: string) {
    super(message);
    this.name = 'UnsupportedModuleError';
  }
}
