import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import http from 'node:http';
import { withTempDir } from './support/temp-dir.js';
import { freePort, startKontainProcess, until, type KontainProcess } from './support/kontain-process.js';
import { request } from './support/http.js';

async function serving(env: Record<string, string>, shellPrefix?: string): Promise<{ kontain: KontainProcess; port: number }> {
  const port = await freePort();
  const kontain = startKontainProcess({ env: { PORT: String(port), ...env }, shellPrefix });
  await until('the server to answer', async () => (await request(`http://127.0.0.1:${port}/healthz`).catch(() => undefined))?.status === 200, 60_000);
  return { kontain, port };
}

interface RawConnection {
  socket: Socket;
  /** Settles when the connection is closed (by the server, or reset). */
  gone: Promise<void>;
}

/** A raw connection from `localAddress`, resolved once connected. */
function rawSocket(port: number, localAddress = '127.0.0.1'): Promise<RawConnection> {
  return new Promise((resolve, reject) => {
    const socket = connect({ port, host: '127.0.0.1', localAddress });
    const gone = new Promise<void>((done) => socket.once('close', () => done()));
    socket.on('data', () => undefined);
    socket.once('error', reject);
    socket.once('connect', () => {
      socket.removeListener('error', reject);
      socket.on('error', () => undefined); // a reset is a close here
      resolve({ socket, gone });
    });
  });
}

test('header-less and idle connections are closed by the server; a slow download outlasting the timeout is not', { timeout: 120_000 }, async () => {
  await withTempDir('kontain-connections-', async (store) => {
    const { kontain, port } = await serving({ KONTAIN_STORE: store, KONTAIN_HEADERS_TIMEOUT: '1' });
    try {
      const silent = await rawSocket(port);
      const emptyLines = await rawSocket(port);
      emptyLines.socket.write('\r\n\r\n\r\n');
      const halfRequest = await rawSocket(port);
      halfRequest.socket.write('GET /v2/ HTTP/1.1\r\nHost: x\r\n');
      const bound = (connection: RawConnection, what: string) =>
        Promise.race([connection.gone, new Promise((_r, reject) => setTimeout(() => reject(new Error(`${what}: still open after 30 s`)), 30_000).unref())]);
      // Generous bound: the timeout is 1 s; before, such connections were held 60 s and more.
      await Promise.all([bound(silent, 'a silent connection'), bound(emptyLines, 'three empty lines'), bound(halfRequest, 'half a request')]);

      // A response that takes longer than the headers timeout is sent whole.
      const manifest = await request(`http://127.0.0.1:${port}/v2/random/slow/manifests/1x1000000`, { headers: { Accept: 'application/vnd.oci.image.manifest.v1+json' } });
      assert.equal(manifest.status, 200);
      const layer = (JSON.parse(manifest.body.toString()) as { layers: Array<{ digest: string; size: number }> }).layers[0]!;
      const received = await new Promise<number>((resolve, reject) => {
        http.get(`http://127.0.0.1:${port}/v2/random/slow/blobs/${layer.digest}`, { agent: false }, (res) => {
          let bytes = 0;
          res.on('data', (chunk: Buffer) => {
            bytes += chunk.length;
            // Read a little, then stop for a while: the download lasts several headers timeouts.
            res.pause();
            setTimeout(() => res.resume(), 200);
          });
          res.on('end', () => resolve(bytes));
          res.on('error', reject);
          res.on('aborted', () => reject(new Error('download cut')));
        }).on('error', reject);
      });
      assert.equal(received, layer.size);
      kontain.child.kill('SIGTERM');
      await kontain.exited(60_000);
    } finally {
      kontain.kill();
    }
  });
});

test('one client holding many idle connections does not stop another client', { timeout: 180_000 }, async () => {
  await withTempDir('kontain-connections-', async (store) => {
    const cap = 20;
    // Few descriptors, so that without a cap the idle sockets would use them all up.
    const { kontain, port } = await serving(
      { KONTAIN_STORE: store, KONTAIN_MAX_CONNECTIONS_PER_CLIENT: String(cap), KONTAIN_HEADERS_TIMEOUT: '300' },
      'ulimit -n 150',
    );
    const hog: RawConnection[] = [];
    try {
      // Client A (127.0.0.2) opens many connections and sends nothing.
      for (let i = 0; i < 300; i++) hog.push(await rawSocket(port, '127.0.0.2').catch(() => rawSocket(port, '127.0.0.2')));
      let closed = 0;
      for (const connection of hog) void connection.gone.then(() => closed++);
      await until(`client A to be left with ${cap} connections`, () => hog.length - closed <= cap, 60_000);

      // Client B (127.0.0.1) is served while A's connections are still open.
      const b = await request(`http://127.0.0.1:${port}/v2/`);
      assert.equal(b.status, 200);
      const image = await request(`http://127.0.0.1:${port}/v2/random/b/manifests/1x100`, { headers: { Accept: 'application/vnd.oci.image.manifest.v1+json' } });
      assert.equal(image.status, 200);
      assert.equal(hog.length - closed, cap, 'A still holds its allowance of connections');
      kontain.child.kill('SIGTERM');
      await kontain.exited(60_000);
    } finally {
      for (const connection of hog) connection.socket.destroy();
      kontain.kill();
    }
  });
});
