import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startKontain, type TestServer } from './support/kontain.js';
import { request } from './support/http.js';
import { setTasksPendingSource } from '../src/server/metrics.js';
import { writeImage } from '../src/oci/image.js';

const ACCEPT = { Accept: 'application/vnd.oci.image.manifest.v1+json' };

let server: TestServer;
let other: TestServer;
before(async () => {
  server = await startKontain();
  other = await startKontain();
});
after(async () => {
  await server.stop();
  await other.stop();
});

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** The samples of a Prometheus text exposition. */
function parse(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const [, key, value] of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[key!] = value!;
    samples.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return samples;
}

/** The value of the one sample with this name and (at least) these labels; 0 when absent. */
function value(samples: Sample[], name: string, labels: Record<string, string> = {}): number {
  const found = samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  assert.ok(found.length <= 1, `${found.length} samples of ${name} ${JSON.stringify(labels)}`);
  return found[0]?.value ?? 0;
}

async function scrape(target: TestServer): Promise<Sample[]> {
  const res = await request(`${target.url}/metrics`);
  assert.equal(res.status, 200);
  assert.match(String(res.headers['content-type']), /^text\/plain; version=0\.0\.4/);
  return parse(res.body.toString());
}

test('/metrics counts requests by service and status, bytes served, generation time, cache lookups and pending tasks', async () => {
  let randomBytes = 0;
  const first = await request(`${server.url}/v2/random/m/manifests/1x100`, { headers: ACCEPT });
  const second = await request(`${server.url}/v2/random/m/manifests/2x100`, { headers: ACCEPT });
  assert.equal(first.status, 200);
  assert.equal(second.status, 200);
  const refused = await request(`${server.url}/v2/random/m/manifests/100x1`, { headers: ACCEPT }); // too many layers
  assert.equal(refused.status, 404);
  const layer = (JSON.parse(first.body.toString()) as { layers: Array<{ digest: string; size: number }> }).layers[0]!;
  const blob = await request(`${server.url}/v2/random/m/blobs/${layer.digest}`);
  assert.equal(blob.status, 200);
  assert.equal(blob.body.length, layer.size);
  const head = await request(`${server.url}/v2/random/m/blobs/${layer.digest}`, { method: 'HEAD' });
  assert.equal(head.status, 200);
  for (const res of [first, second, refused, blob, head]) randomBytes += res.body.length;
  assert.equal((await request(`${server.url}/healthz`)).status, 200);

  // Cache lookups are counted by the pointer's service: one miss builds, the next hits.
  const build = () => writeImage(server.store, { family: 'oci', config: { architecture: 'amd64', os: 'linux' }, layers: [] });
  await server.store.cached('flatten', 'key', build);
  await server.store.cached('flatten', 'key', build);
  await server.store.cached('flatten', 'key', build);

  const unregister = setTasksPendingSource(() => 7);
  let samples: Sample[];
  try {
    samples = await scrape(server);
  } finally {
    unregister();
  }

  assert.equal(value(samples, 'kontain_requests_total', { service: 'random', status: '200' }), 4);
  assert.equal(value(samples, 'kontain_requests_total', { service: 'random', status: '404' }), 1);
  assert.equal(value(samples, 'kontain_requests_total', { service: 'none', status: '200' }), 1, 'the health check');
  assert.equal(value(samples, 'kontain_bytes_served_total', { service: 'random' }), randomBytes);
  // Only successful generations are timed: the refused tag is not one.
  assert.equal(value(samples, 'kontain_generation_seconds_count', { service: 'random' }), 2);
  assert.equal(value(samples, 'kontain_generation_seconds_bucket', { service: 'random', le: '+Inf' }), 2);
  assert.ok(value(samples, 'kontain_generation_seconds_sum', { service: 'random' }) > 0);
  assert.equal(value(samples, 'kontain_cache_total', { service: 'flatten', result: 'miss' }), 1);
  assert.equal(value(samples, 'kontain_cache_total', { service: 'flatten', result: 'hit' }), 2);
  assert.equal(value(samples, 'kontain_tasks_pending'), 7);
  assert.ok(samples.some((s) => s.name === 'process_cpu_user_seconds_total'), 'default process metrics');

  const later = await scrape(server);
  assert.equal(value(later, 'kontain_tasks_pending'), 0, 'unregistered');
  assert.equal(value(later, 'kontain_requests_total', { service: 'none', status: '200' }), 2, 'the first scrape counts too');
});

test('each server has its own registry', async () => {
  const before = await scrape(other);
  assert.equal(value(before, 'kontain_requests_total', { service: 'random', status: '200' }), 0);
  assert.equal((await request(`${other.url}/v2/random/o/manifests/1x10`, { headers: ACCEPT })).status, 200);
  const after = await scrape(other);
  assert.equal(value(after, 'kontain_requests_total', { service: 'random', status: '200' }), 1);
});

test('a refused push is counted under the service it was for, not "none"', async () => {
  const before = await scrape(other);
  const put = await request(`${other.url}/v2/random/p/manifests/latest`, { method: 'PUT', body: '{}' });
  assert.equal(put.status, 405);
  const after = await scrape(other);
  assert.equal(value(after, 'kontain_requests_total', { service: 'random', status: '405' }) - value(before, 'kontain_requests_total', { service: 'random', status: '405' }), 1);
  assert.equal(value(after, 'kontain_requests_total', { service: 'none', status: '405' }), 0);
});
