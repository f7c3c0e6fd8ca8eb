// The guest's clocks. The monotonic clock is counted from an offset kept as state, so that a
// restarted program (another process, another host) sees it continue instead of jumping back.
import { Clockid, Errno } from './constants.js';
import { WasiError } from './errno.js';

export class Clocks {
  /** Monotonic nanoseconds the guest saw before this process started counting. */
  private readonly monotonicBase: bigint;
  private readonly hrStart = process.hrtime.bigint();
  /** realtime = hrtime + this; re-anchored to the wall clock when the two drift apart. */
  private realtimeOffset = 0n;

  constructor(monotonicStart = 0n) {
    this.monotonicBase = monotonicStart;
    this.anchorRealtime();
  }

  /** Nanoseconds on the given clock. */
  now(id: number): bigint {
    switch (id) {
      case Clockid.REALTIME: {
        const t = process.hrtime.bigint() + this.realtimeOffset;
        // Follow wall-clock adjustments (NTP steps, suspend) while keeping ns resolution.
        const wallMs = BigInt(Date.now());
        const drift = t / 1_000_000n - wallMs;
        if (drift > 2n || drift < -2n) return this.anchorRealtime();
        return t;
      }
      case Clockid.MONOTONIC:
        return this.monotonic();
      case Clockid.PROCESS_CPUTIME:
      case Clockid.THREAD_CPUTIME: {
        const u = process.cpuUsage();
        return BigInt(u.user + u.system) * 1000n;
      }
      default:
        throw new WasiError(Errno.INVAL);
    }
  }

  /** Resolution in nanoseconds. */
  resolution(id: number): bigint {
    switch (id) {
      case Clockid.REALTIME:
      case Clockid.MONOTONIC:
        return 1n;
      case Clockid.PROCESS_CPUTIME:
      case Clockid.THREAD_CPUTIME:
        return 1000n;
      default:
        throw new WasiError(Errno.INVAL);
    }
  }

  monotonic(): bigint {
    return this.monotonicBase + (process.hrtime.bigint() - this.hrStart);
  }

  private anchorRealtime(): bigint {
    const wall = BigInt(Date.now()) * 1_000_000n;
    this.realtimeOffset = wall - process.hrtime.bigint();
    return wall;
  }
}
