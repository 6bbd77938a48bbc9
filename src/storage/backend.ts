import type { Readable } from 'node:stream';

/** What a backend knows about one stored object. */
export interface ObjectInfo {
  size: number;
  contentType: string;
  /** Free-form string metadata (the content store keeps the digest here). */
  metadata: Record<string, string>;
  /**
   * When the object was created or last touched: garbage collection compares it with a
   * grace period.
   */
  created: Date;
}

/** An inclusive byte range, as HTTP `Range: bytes=start-end` means it. */
export interface ByteRange {
  start: number;
  end: number;
}

export interface WriteOptions {
  contentType?: string;
  metadata?: Record<string, string>;
}

/**
 * The handful of primitives a blob store offers. Everything above this (digests,
 * manifests, pointers, garbage collection) lives in the content store, so a new
 * backend only has to implement these.
 *
 * Object names are slash-separated relative paths such as `blobs/sha256/<hex>`.
 */
export interface StorageBackend {
  /** A short human name for logs ("fs:/data", "gs://bucket/prefix"). */
  readonly description: string;
  stat(name: string): Promise<ObjectInfo | undefined>;
  /** Streams the object, or one byte range of it. Rejects with ObjectNotFound when absent. */
  read(name: string, range?: ByteRange): Promise<Readable>;
  /**
   * Writes `body` under `name` unless an object with that name exists. Never leaves a
   * partial object under `name`. Resolves true when this call created it, false when
   * another writer got there first (not an error: names are content addresses).
   */
  createIfAbsent(name: string, body: Readable, options?: WriteOptions): Promise<boolean>;
  /**
   * Moves `from` to `to` unless `to` exists (then `from` is just deleted). Used to
   * promote a temporary object to its content address once its digest is known.
   */
  moveIfAbsent(from: string, to: string, options?: WriteOptions): Promise<boolean>;
  /**
   * Marks an existing object as in use now (its `created` becomes now), without changing
   * its bytes. Writers call it when they find the object already there, so garbage
   * collection does not take an old object that a new image has just started to use.
   * Absent objects are not an error.
   */
  touch(name: string): Promise<void>;
  /**
   * Deletes what crashed writers left outside the object namespace (the fs backend's temp
   * directory), keeping live writers' files. Backends without such a place omit it.
   */
  removeAbandonedTemps?(maxAgeMs: number, options?: { dryRun?: boolean }): Promise<{ removed: number; bytes: number }>;
  /** Deletes the object; absent objects are not an error. */
  delete(name: string): Promise<void>;
  /** Lists objects whose name starts with `prefix`. */
  list(prefix: string): AsyncIterable<{ name: string; info: ObjectInfo }>;
  /**
   * A URL a client may GET the object from directly (public or signed), or undefined
   * when the backend has none and the app must stream the bytes itself.
   */
  downloadURL?(name: string): Promise<string | undefined>;
}

/** A small object's bytes whole (pointers, records, manifests), or undefined when there is none. */
export async function readObject(backend: StorageBackend, name: string): Promise<Buffer | undefined> {
  const chunks: Buffer[] = [];
  try {
    for await (const chunk of await backend.read(name)) chunks.push(chunk as Buffer);
  } catch (err) {
    if (err instanceof ObjectNotFound) return undefined;
    throw err;
  }
  return Buffer.concat(chunks);
}

export class ObjectNotFound extends Error {
  constructor(readonly objectName: string) {
    super(`object ${objectName} not found`);
    this.name = 'ObjectNotFound';
  }
}
