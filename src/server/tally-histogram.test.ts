import { test } from 'node:test';
import assert from 'node:assert/strict';
import client from 'prom-client';
import { TallyHistogram } from './tally-histogram.js';

const BOUNDS = [0.005, 0.1, 1, 10];
// Below, on and between the bounds, above all of them, for two label values.
const OBSERVED: Array<[string, number]> = [
  ['random', 0.0001],
  ['random', 0.005],
  ['random', 0.05],
  ['static', 0.1],
  ['random', 3],
  ['static', 42],
  ['random', 0.005],
];

test("a tally histogram's /metrics text and JSON are prom-client's Histogram's for the same observations", async () => {
  const theirs = new client.Registry();
  const reference = new client.Histogram({ name: 'h_seconds', help: 'Help text.', labelNames: ['service'], buckets: BOUNDS, registers: [theirs] });
  const ours = new client.Registry();
  const tally = new TallyHistogram('h_seconds', 'Help text.', 'service', BOUNDS);
  ours.registerMetric(tally.asMetric());
  for (const [service, value] of OBSERVED) {
    reference.observe({ service }, value);
    tally.observe(service, value);
  }
  const text = await ours.metrics();
  assert.equal(text, await theirs.metrics());
  assert.match(text, /^h_seconds_bucket\{le="0.1",service="random"\} 4$/m);
  assert.match(text, /^h_seconds_bucket\{le="\+Inf",service="static"\} 2$/m);
  assert.deepEqual(await ours.getMetricsAsJSON(), await theirs.getMetricsAsJSON());

  ours.resetMetrics();
  theirs.resetMetrics();
  assert.equal(await ours.metrics(), await theirs.metrics());
});
