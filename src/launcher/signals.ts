// The process's signals, for commands that own the process (the CLI's run, launch, restart).

/** Exit statuses for signals that end a program (as a shell reports them). */
export const SIGNAL_STATUS: readonly (readonly [NodeJS.Signals, number])[] = [['SIGINT', 130], ['SIGTERM', 143], ['SIGHUP', 129]];

/**
 * Handles each terminating signal: `override` for those it names, else `end(status)` with the
 * signal's status. Returns the function that removes the handlers.
 */
export function onTerminatingSignals(end: (status: number) => void, override: Partial<Record<NodeJS.Signals, () => void>> = {}): () => void {
  const installed = SIGNAL_STATUS.map(([sig, status]) => {
    const h = override[sig] ?? ((): void => end(status));
    process.on(sig, h);
    return [sig, h] as const;
  });
  return () => {
    for (const [sig, h] of installed) process.off(sig, h);
  };
}
