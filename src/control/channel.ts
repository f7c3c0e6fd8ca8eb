// The control channel: newline-delimited JSON over a Unix socket readable only by its owner.
import { chmodSync, rmSync } from 'node:fs';
import type * as net from 'node:net';
import { StasisError } from '../errors.js';
import { nodeNet } from '../util/builtins.js';

export type Request =
  | { cmd: 'checkpoint'; exit?: boolean }
  | { cmd: 'status' }
  | { cmd: 'kill' };

export type Reply = { ok: true; [k: string]: unknown } | { ok: false; error: string };

export type Handler = (req: Request) => Promise<Reply>;

/** Serves the socket at path, made here; or, given fd, the one listening there already (made
 *  before this thread could serve it, by the native addon's listenUnix). */
export function serve(path: string, handler: Handler, fd?: number): net.Server {
  if (fd === undefined) rmSync(path, { force: true });
  const server = nodeNet().createServer((conn) => {
    let buf = '';
    conn.setEncoding('utf8');
    conn.on('data', (chunk: string) => {
      buf += chunk;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        let req: Request;
        try {
          req = JSON.parse(line) as Request;
        } catch {
          conn.write(JSON.stringify({ ok: false, error: 'bad request' }) + '\n');
          continue;
        }
        handler(req).then(
          (r) => conn.write(JSON.stringify(r) + '\n'),
          (e: unknown) => conn.write(JSON.stringify({ ok: false, error: (e as Error).message }) + '\n'),
        );
      }
    });
    conn.on('error', () => {});
  });
  // Made 0600 by chmod, not by a umask around its creation: the umask is the process's, and the
  // program's thread may be creating its files at that moment. (Until the chmod the socket is
  // as the umask makes it, in a directory no other user can enter: registry.ts.)
  if (fd !== undefined) {
    server.listen({ fd });
  } else {
    server.listen(path);
    chmodSync(path, 0o600);
  }
  server.unref();
  return server;
}

/** Sends one request and waits for its reply. */
export function request(path: string, req: Request, timeoutMs = 0): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const conn = nodeNet().createConnection(path);
    let buf = '';
    const timer = timeoutMs > 0 ? setTimeout(() => {
      conn.destroy();
      reject(new StasisError('CONTROL', `no answer from ${path} within ${timeoutMs} ms`));
    }, timeoutMs) : null;
    conn.setEncoding('utf8');
    conn.on('connect', () => conn.write(JSON.stringify(req) + '\n'));
    conn.on('data', (chunk: string) => {
      buf += chunk;
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      if (timer) clearTimeout(timer);
      conn.end();
      try {
        resolve(JSON.parse(buf.slice(0, nl)) as Reply);
      } catch {
        reject(new StasisError('CONTROL', `garbled answer from ${path}`));
      }
    });
    conn.on('error', (e) => {
      if (timer) clearTimeout(timer);
      reject(new StasisError('CONTROL', `cannot reach the program's control socket ${path}: ${e.message}`));
    });
    conn.on('close', () => {
      if (timer) clearTimeout(timer);
      if (buf.indexOf('\n') < 0) reject(new StasisError('CONTROL', `the program closed its control socket without answering (it may have exited)`));
    });
  });
}
