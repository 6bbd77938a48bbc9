import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { createLogger } from './logging.js';
import { installConnectionEntry } from './connection-entry.js';

/** Sends `bytes` on a new connection and returns what came back once the server closed it (or after 2 s). */
function exchange(port: number, bytes: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', reject);
    socket.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')));
    socket.write(bytes);
    setTimeout(() => socket.destroy(), 2000);
  });
}

test('an answer source that throws closes that connection, logged, and the server goes on answering', async () => {
  const lines: string[] = [];
  const log = createLogger('warn', { write: (line: string) => void lines.push(line) });
  const server = createServer((_req, res) => res.end('from node:http'));
  const entry = installConnectionEntry(server, { headersTimeoutMs: 5000, log });
  let failing = true;
  entry.use({
    take: () => {
      if (failing) throw new Error('broken answer source');
      return undefined;
    },
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  try {
    const request = 'GET /v2/x/manifests/latest HTTP/1.1\r\nHost: h\r\n\r\n';
    assert.equal(await exchange(port, request), '', 'the connection closed without an answer');
    assert.equal(lines.length, 1);
    assert.match(lines[0]!, /connection entry failed/);
    assert.match(lines[0]!, /broken answer source/);
    failing = false;
    // Nothing remembered now: node:http answers, on a new connection.
    assert.match(await exchange(port, request.replace('\r\n\r\n', '\r\nConnection: close\r\n\r\n')), /^HTTP\/1\.1 200 OK\r\n[^]*\r\n\r\nfrom node:http$/);
  } finally {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});

test("a server whose first connection listener is not node:http's is left to node:http, with a warning", async () => {
  const lines: string[] = [];
  const log = createLogger('warn', { write: (line: string) => void lines.push(line) });
  const server = createServer((_req, res) => res.end('from node:http'));
  server.prependListener('connection', function countConnections() {});
  const entry = installConnectionEntry(server, { headersTimeoutMs: 5000, log });
  let asked = 0;
  entry.use({
    take: () => {
      asked++;
      return undefined;
    },
  });
  assert.equal(lines.length, 1);
  assert.match(lines[0]!, /connection listener was not found/);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  try {
    const answer = await exchange(port, 'GET /v2/x/manifests/latest HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n');
    assert.match(answer, /\r\n\r\nfrom node:http$/);
    assert.equal(asked, 0, 'the entry read nothing');
  } finally {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});
