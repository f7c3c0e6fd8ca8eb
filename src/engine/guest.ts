// Worker-thread entry: runs one WASI program under checkpoint control (engine/program.ts). The
// main thread stays free to flush buffered writes on time, handle signals and serve the control
// socket while the guest computes. (The CLI with the native addon runs its program on the main
// thread instead: launcher/main-thread.ts; `run`: engine/inline.ts.)
import { parentPort, workerData } from 'node:worker_threads';
import { runProgram, type Post } from './program.js';
import { GUEST_WORKER, type GuestData } from './protocol.js';

// Started before there is a program to run (launcher/threads.ts): it comes as the first message.
if (parentPort !== null && workerData?.kind === GUEST_WORKER) {
  const port = parentPort;
  const post: Post = (m, transfer) => port.postMessage(m, transfer);
  port.once('message', (data: GuestData) => {
    const { restore, ...rest } = data;
    void runProgram({
      ...rest,
      ...(restore && {
        restore: {
          ...restore,
          // Once the guest has read and checked its memory, the main thread puts the files in place.
          putFiles: () => new Promise<[number, number][]>((resolve) => {
            restore.files.once('message', (handles: [number, number][]) => {
              restore.files.close();
              resolve(handles);
            });
            post({ type: 'loaded' });
          }),
        },
      }),
    }, post).then(
      (result) => post({ type: 'result', ...result }),
      (e: unknown) => {
        throw e;
      },
    );
  });
}
