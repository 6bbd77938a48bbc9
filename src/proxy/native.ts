/**
 * The fd-passing addon (native/fdpass.c, built at `npm ci`) behind small promise-based
 * helpers: a SOCK_SEQPACKET socket given as a descriptor, and pipes whose read end is
 * handed to the client while the write end is a non-blocking stream here.
 */
import { closeSync, existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { createWriteStream, type WriteStream } from 'node:fs';

interface FdPass {
  pipe(): [number, number];
  recv(fd: number, maxBytes: number): { data: Buffer; fds: number[]; truncated: boolean; eof: boolean } | null;
  send(fd: number, data: Buffer, fds: number[]): boolean;
  waitFor(fd: number, writable: boolean, callback: (error: string | null) => void): void;
}

let addon: FdPass | undefined;

/**
 * native/build/Release/fdpass.node at the package root, found by walking up from this
 * module: it runs from dist/src/proxy/ (compiled tree) and from dist/bundle/ (the bundle).
 */
function addonPath(): string {
  const relative = path.join('native', 'build', 'Release', 'fdpass.node');
  for (let dir = path.dirname(fileURLToPath(import.meta.url)); ; dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, relative))) return path.join(dir, relative);
    if (path.dirname(dir) === dir) return relative;
  }
}

function fdpass(): FdPass {
  if (!addon) {
    const require = createRequire(import.meta.url);
    try {
      addon = require(addonPath()) as FdPass;
    } catch (err) {
      throw new Error(`the fd-passing addon is not built (${(err as Error).message}); run npm ci or node native/build.mjs`);
    }
  }
  return addon;
}

function waitFor(fd: number, writable: boolean): Promise<void> {
  return new Promise((resolve, reject) => {
    fdpass().waitFor(fd, writable, (error) => (error ? reject(new Error(`waiting on fd ${fd}: ${error}`)) : resolve()));
  });
}

export interface Packet {
  data: Buffer;
  fds: number[];
  /** The message was longer than the buffer (the rest is lost, as with skopeo). */
  truncated: boolean;
}

/** One end of a SOCK_SEQPACKET socketpair: whole messages, with descriptors attached. */
export class SeqpacketSocket {
  constructor(readonly fd: number) {}

  /** The next message, or undefined once the peer has closed its end. */
  async receive(maxBytes: number): Promise<Packet | undefined> {
    for (;;) {
      const message = fdpass().recv(this.fd, maxBytes);
      if (message) {
        if (message.eof && message.data.length === 0 && message.fds.length === 0) return undefined;
        return message;
      }
      await waitFor(this.fd, false);
    }
  }

  async send(data: Buffer, fds: number[] = []): Promise<void> {
    while (!fdpass().send(this.fd, data, fds)) await waitFor(this.fd, true);
  }
}

/**
 * A pipe: the read end's descriptor (to pass on, then close) and the write end as a stream.
 * The write end stays blocking and is written from libuv's thread pool, so copying into
 * the pipe runs beside the main thread's HTTP parsing and hashing (as a blocked writer it
 * holds one pool thread until the client reads; the client owns this process alone).
 */
export function openPipe(): { readFd: number; writeFd: number; writer: WriteStream } {
  const [readFd, writeFd] = fdpass().pipe();
  const writer = createWriteStream('', { fd: writeFd, highWaterMark: 1 << 20, autoClose: true });
  return { readFd, writeFd, writer };
}

export function closeFd(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // already closed
  }
}
