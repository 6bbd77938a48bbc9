import { randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { readObject, type StorageBackend } from './backend.js';

/** How long the probe may take before the store counts as unusable (an unreachable bucket). */
const PROBE_TIMEOUT_MS = 30_000;

/**
 * Creates, reads back and deletes one small object, so a store that cannot be used is
 * found at start instead of by every pull. The object lives under `tmp/`, which garbage
 * collection clears should a crash leave it behind. Rejects with the reason.
 */
export async function probeStore(backend: StorageBackend, timeoutMs = PROBE_TIMEOUT_MS): Promise<void> {
  const name = `tmp/start-probe-${randomUUID()}`;
  const bytes = Buffer.from(`kontain start probe ${new Date().toISOString()}\n`);
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs / 1000} s`)), timeoutMs);
  });
  const step = async <T>(what: string, work: Promise<T>): Promise<T> => {
    try {
      return await Promise.race([work, timeout]);
    } catch (err) {
      throw new Error(`${what} failed: ${(err as Error).message}`, { cause: err });
    }
  };
  try {
    await step('writing a test object', backend.createIfAbsent(name, Readable.from([bytes]), { contentType: 'text/plain' }));
    const read = await step('reading the test object back', readObject(backend, name));
    if (!read || !read.equals(bytes)) throw new Error('the test object read back differs from what was written');
    await step('deleting the test object', backend.delete(name));
  } finally {
    clearTimeout(timer);
  }
}
