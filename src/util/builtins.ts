// Node built-ins that only some paths use, loaded at their first use rather than with the module
// that needs them: each costs a thread's start-up a few ms (node:crypto ~4 ms, node:zlib ~4 ms,
// node:child_process ~3 ms, node:net ~1.5 ms, node:v8 ~1 ms), and start-up is paid by every run,
// most of which never hash, decompress or run a command (nor serve a socket on the main thread,
// nor change V8's flags).
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

export const nodeCrypto = (): typeof import('node:crypto') => require('node:crypto') as typeof import('node:crypto');
export const nodeChildProcess = (): typeof import('node:child_process') => require('node:child_process') as typeof import('node:child_process');
export const nodeZlib = (): typeof import('node:zlib') => require('node:zlib') as typeof import('node:zlib');
export const nodeNet = (): typeof import('node:net') => require('node:net') as typeof import('node:net');
export const nodeV8 = (): typeof import('node:v8') => require('node:v8') as typeof import('node:v8');
