import { test } from 'node:test';
import assert from 'node:assert/strict';
import { utimes } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { FsBackend } from '../storage/fs.js';
import { StoreLeases } from './lease.js';
import { withTempDir } from '../../test/support/temp-dir.js';

/** A result slot in the store, as a pointer is: `done` reads it, `work` writes it. */
function slot(backend: FsBackend, name: string, onWork: () => Promise<void> = async () => {}) {
  let runs = 0;
  return {
    runs: () => runs,
    done: async () => (await backend.stat(name)) ? 'made' : undefined,
    work: async () => {
      runs++;
      await onWork();
      await backend.createIfAbsent(name, Readable.from([Buffer.from('x')]));
      return 'made';
    },
  };
}

test('two instances asking at once: the work runs once and both get its result', () =>
  withTempDir('kontain-lease-', async (dir) => {
    const backend = new FsBackend(dir);
    const a = new StoreLeases(backend, { ttlMs: 5000, pollMs: 10 });
    const b = new StoreLeases(backend, { ttlMs: 5000, pollMs: 10 });
    const work = slot(backend, 'result', () => sleep(200));
    const results = await Promise.all([a.once('k', work), b.once('k', work), a.once('k', work), b.once('k', work)]);
    assert.deepEqual(results, ['made', 'made', 'made', 'made']);
    assert.equal(work.runs(), 1);
    // The holder removes its lease when done.
    const left = [];
    for await (const o of backend.list('leases/')) left.push(o.name);
    assert.deepEqual(left, []);
  }));

test('a lease its holder stopped renewing is taken over after the TTL', () =>
  withTempDir('kontain-lease-', async (dir) => {
    const backend = new FsBackend(dir);
    // A dead instance's lease: epoch 1, last renewed a minute ago.
    const dead = `${StoreLeases.prefix('k')}000000000001`;
    await backend.createIfAbsent(dead, Readable.from([Buffer.from('{}')]));
    const past = new Date(Date.now() - 60_000);
    await utimes(path.join(dir, dead), past, past);
    const survivor = new StoreLeases(backend, { ttlMs: 1000, pollMs: 10 });
    const work = slot(backend, 'result');
    assert.equal(await survivor.once('k', work), 'made');
    assert.equal(work.runs(), 1);
    assert.equal(await backend.stat(dead), undefined, 'the dead lease is cleaned up by the taker');
  }));

test('a live lease is waited for, not taken: the holder renews it past the TTL', () =>
  withTempDir('kontain-lease-', async (dir) => {
    const backend = new FsBackend(dir);
    const holder = new StoreLeases(backend, { ttlMs: 300, pollMs: 10 });
    const waiter = new StoreLeases(backend, { ttlMs: 300, pollMs: 10 });
    // The holder's work lasts several TTLs; it renews every 100 ms, so the waiter must not take over.
    const work = slot(backend, 'result', () => sleep(1200));
    const first = holder.once('k', work);
    await sleep(50);
    const second = waiter.once('k', work);
    assert.deepEqual(await Promise.all([first, second]), ['made', 'made']);
    assert.equal(work.runs(), 1);
  }));

test('a failed holder lets the next caller try again', () =>
  withTempDir('kontain-lease-', async (dir) => {
    const backend = new FsBackend(dir);
    const leases = new StoreLeases(backend, { ttlMs: 5000, pollMs: 10 });
    await assert.rejects(leases.once('k', { done: async () => undefined, work: async () => Promise.reject(new Error('boom')) }), /boom/);
    const work = slot(backend, 'result');
    assert.equal(await leases.once('k', work), 'made');
  }));
