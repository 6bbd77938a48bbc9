import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import pino from 'pino';
import { loadConfig } from '../config.js';
import { ContentStore } from '../content/store.js';
import { AcceptedTypes } from '../registry/accept.js';
import { RegistryError } from '../registry/errors.js';
import type { StorageBackend, WriteOptions } from '../storage/backend.js';
import { FsBackend } from '../storage/fs.js';
import { EmbeddedTaskQueue } from '../tasks/embedded.js';
import { WaitGenerator } from './wait.js';

const log = pino({ level: 'silent' });

/**
 * The store as a process sees it that dies after its first write of a pointer or a
 * task: that write lands, and every later one never returns.
 */
function dyingAfterFirstWrite(backend: StorageBackend): StorageBackend {
  let writes = 0;
  return Object.assign(Object.create(backend) as StorageBackend, {
    createIfAbsent(name: string, body: Readable, options?: WriteOptions): Promise<boolean> {
      if (!name.startsWith('pointers/') && !name.startsWith('tasks/')) return backend.createIfAbsent(name, body, options);
      if (writes++ > 0) return new Promise<boolean>(() => undefined);
      return backend.createIfAbsent(name, body, options);
    },
  });
}

function waitHost(backend: StorageBackend): { generator: WaitGenerator; tasks: EmbeddedTaskQueue; store: ContentStore } {
  const store = new ContentStore(backend);
  const tasks = new EmbeddedTaskQueue(backend, { log });
  const generator = new WaitGenerator({ store, tasks, log, config: loadConfig({}) });
  return { generator, tasks, store };
}

const pull = (generator: WaitGenerator, tag: string) => generator.manifest({ repository: 'crash', tag, accept: AcceptedTypes.all(), log });

test('a crash between the wait task and its placeholder does not block the name', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'kontain-wait-crash-'));
  const disk = new FsBackend(dir);
  try {
    // The first pull dies between its two writes (its answer never comes).
    const dying = waitHost(dyingAfterFirstWrite(disk));
    void pull(dying.generator, '0s').catch(() => undefined);
    const written = async () => {
      for (const prefix of ['pointers/', 'tasks/']) for await (const _ of disk.list(prefix)) return true;
      return false;
    };
    while (!(await written())) await new Promise((resolve) => setTimeout(resolve, 20));

    // After a restart on the same store, once the queue has run what it found, the name
    // gives the image: not "being made, pull again" for minutes.
    const restarted = waitHost(disk);
    await restarted.tasks.start();
    const deadline = Date.now() + 30_000;
    while (restarted.tasks.pending() > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
    let answer: unknown;
    try {
      answer = await pull(restarted.generator, '0s');
    } catch (err) {
      answer = err;
    }
    await restarted.tasks.stop();
    assert.ok(!(answer instanceof RegistryError), `the name is blocked: ${(answer as Error).message}`);
    assert.match((answer as { digest: string }).digest, /^sha256:[0-9a-f]{64}$/);
    assert.ok(await restarted.store.getManifest((answer as { digest: string }).digest), 'the image is in the store');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
