/**
 * The start gate (src/server/start-gate.ts): what a server answers between listening and
 * having loaded the rest. A real HTTP server with the gate as its listener.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createLogger } from '../src/server/logging.js';
import { createMetrics } from '../src/server/metrics.js';
import { startGate, type StartGate } from '../src/server/start-gate.js';
import { request, registryError } from './support/http.js';

async function serve(gate: StartGate): Promise<{ url: string; close(): Promise<void> }> {
  const server = http.createServer(gate.listener);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

function gateWithLog() {
  const lines: Array<Record<string, unknown>> = [];
  const log = createLogger('info', { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
  return { gate: startGate({ domain: 'example.test', log, metrics: createMetrics() }), lines };
}

test('before it opens: the base route is answered and logged, a waiting request goes to the entry once it opens', async () => {
  const { gate, lines } = gateWithLog();
  const server = await serve(gate);
  try {
    const base = await request(`${server.url}/v2/`);
    assert.equal(base.status, 200);
    assert.equal(base.body.toString(), '{}');
    assert.equal(base.headers['docker-distribution-api-version'], 'registry/2.0');
    assert.ok(lines.some((line) => line.message === 'GET /v2/ 200'), 'the base route is logged');
    // The viz host's base route is refused by viz's router, which only the full entry has.
    let entered = '';
    const viz = request(`${server.url}/v2/`, { headers: { host: 'viz.example.test' } });
    const other = request(`${server.url}/healthz`);
    // Answered while those two wait.
    assert.equal((await request(`${server.url}/v2`, { method: 'HEAD' })).status, 200);
    assert.equal(entered, '');
    gate.open((req, res) => {
      entered += `${req.headers.host} ${req.url};`;
      res.end('entry');
    });
    assert.equal((await viz).body.toString(), 'entry');
    assert.equal((await other).body.toString(), 'entry');
    assert.equal((await request(`${server.url}/v2/`)).body.toString(), 'entry', 'once open, the entry answers everything');
    assert.match(entered, /viz\.example\.test \/v2\/;/);
  } finally {
    await server.close();
  }
});

test('a server that fails to start answers what waited, and what comes later, 503 UNAVAILABLE', async () => {
  const { gate } = gateWithLog();
  const server = await serve(gate);
  try {
    const waiting = request(`${server.url}/v2/random/x/manifests/latest`);
    assert.equal((await request(`${server.url}/v2/`)).status, 200);
    gate.fail();
    for (const answer of [await waiting, await request(`${server.url}/healthz`)]) {
      assert.equal(answer.status, 503);
      assert.equal(registryError(answer).code, 'UNAVAILABLE');
    }
  } finally {
    await server.close();
  }
});
