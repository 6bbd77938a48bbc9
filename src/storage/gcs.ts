import { createHash, randomUUID } from 'node:crypto';
import type { Readable } from 'node:stream';
import { Storage, type File, type FileMetadata } from '@google-cloud/storage';
import { ObjectNotFound, type ByteRange, type ObjectInfo, type StorageBackend, type WriteOptions } from './backend.js';

const DEFAULT_ENDPOINT = 'https://storage.googleapis.com';
/** V4 signed URLs may live at most seven days. */
const MAX_SIGNED_URL_EXPIRY_SECONDS = 7 * 24 * 60 * 60;
const LIST_PAGE_SIZE = 1000;

export type GcsUrlMode = 'public' | 'signed' | 'none';

export interface GcsBackendOptions {
  bucket: string;
  /** Folder inside the bucket that holds every object of this store ('' or absent: the bucket root). */
  prefix?: string;
  /**
   * Base URL of a GCS-compatible endpoint (tests, local emulators). When set, requests
   * are sent there unauthenticated, as the client library does for custom endpoints.
   */
  apiEndpoint?: string;
  /** What downloadURL returns: the public object URL, a V4 signed URL, or nothing (the app streams). */
  urlMode: GcsUrlMode;
  /** Lifetime of signed URLs, 1 s to 7 days. */
  signedUrlExpirySeconds: number;
  projectId?: string;
  /**
   * A service account key to sign URLs with (and to authenticate with, against the real
   * endpoint). Without it, Application Default Credentials are used; on Cloud Run,
   * signing then goes through the IAM signBlob API.
   */
  credentials?: { client_email: string; private_key: string };
}

/**
 * The production store: objects in a Cloud Storage bucket. Create-if-absent relies on
 * the server-side `ifGenerationMatch=0` precondition, so two instances racing on the
 * same content address never overwrite each other and never expose a partial object
 * (an upload only becomes visible when it completes).
 */
export class GcsBackend implements StorageBackend {
  readonly description: string;
  private readonly storage: Storage;
  private readonly bucketName: string;
  private readonly prefix: string;
  private readonly endpoint: string;
  private readonly customEndpoint: boolean;
  private readonly urlMode: GcsUrlMode;
  private readonly signedUrlExpirySeconds: number;

  constructor(options: GcsBackendOptions) {
    validateBucketName(options.bucket);
    if (!['public', 'signed', 'none'].includes(options.urlMode)) {
      throw new Error(`GCS URL mode must be public, signed or none, not ${JSON.stringify(options.urlMode)}`);
    }
    const expiry = options.signedUrlExpirySeconds;
    if (!Number.isInteger(expiry) || expiry < 1 || expiry > MAX_SIGNED_URL_EXPIRY_SECONDS) {
      throw new Error(`GCS signed URL expiry must be a whole number of seconds from 1 to ${MAX_SIGNED_URL_EXPIRY_SECONDS}, not ${expiry}`);
    }
    this.bucketName = options.bucket;
    this.prefix = normalizePrefix(options.prefix ?? '');
    this.urlMode = options.urlMode;
    this.signedUrlExpirySeconds = expiry;
    this.customEndpoint = options.apiEndpoint !== undefined && options.apiEndpoint !== '';
    this.endpoint = this.customEndpoint ? options.apiEndpoint!.replace(/\/+$/, '') : DEFAULT_ENDPOINT;
    this.storage = new Storage({
      projectId: options.projectId,
      ...(this.customEndpoint ? { apiEndpoint: this.endpoint } : {}),
      ...(options.credentials ? { credentials: options.credentials } : {}),
    });
    this.description = `gs://${this.bucketName}/${this.prefix}`.replace(/\/$/, '');
  }

  async stat(name: string): Promise<ObjectInfo | undefined> {
    try {
      const [metadata] = await this.file(name).getMetadata();
      return toObjectInfo(metadata);
    } catch (err) {
      if (statusOf(err) === 404) return undefined;
      throw err;
    }
  }

  async read(name: string, range?: ByteRange): Promise<Readable> {
    // The client checks crc32c on whole-object reads; it cannot on ranges.
    const stream = this.file(name).createReadStream(range ? { start: range.start, end: range.end, validation: false } : {});
    // The library only sends the request once the stream is read, and reports a 404 as a
    // later stream error. Kick it off without consuming data and wait for the status, so
    // a missing object rejects here instead.
    await new Promise<void>((resolve, reject) => {
      const onResponse = (res: { statusCode?: number; status?: number }) => {
        const status = res.statusCode ?? res.status ?? 0;
        if (status >= 200 && status < 300) {
          stream.off('error', onError);
          stream.off('response', onResponse);
          resolve();
        }
        // Otherwise the library destroys the stream with an error carrying the body.
      };
      const onError = (err: unknown) => {
        stream.off('response', onResponse);
        reject(statusOf(err) === 404 ? new ObjectNotFound(name) : err);
      };
      stream.once('error', onError);
      stream.on('response', onResponse);
      stream.read(0);
    });
    return stream;
  }

  /**
   * One streaming multipart upload with `ifGenerationMatch=0`. This deliberately does not
   * use File#createWriteStream: when the source stream fails half-way, the library (8.x,
   * both resumable and multipart modes) leaves its HTTP request open with a body that
   * never ends, pinning a socket until the server gives up. Here the request is aborted
   * with the source, so the server discards the partial body and nothing is created.
   * The request goes to the same JSON API endpoint with the library's own credentials.
   * There is no retry: a consumed stream cannot be replayed; callers retry the whole write.
   */
  async createIfAbsent(name: string, body: Readable, options: WriteOptions = {}): Promise<boolean> {
    let sourceDone = false;
    try {
      return await this.upload(name, body, options, () => (sourceDone = true));
    } finally {
      // Whatever happened (a refusal before sending, a 412 answered before the whole body
      // was read, a network error), drop the rest of the source so its producer is not
      // left blocked on a full buffer.
      if (!sourceDone) body.destroy();
    }
  }

  private async upload(name: string, body: Readable, options: WriteOptions, onSourceDone: () => void): Promise<boolean> {
    const objectName = this.objectName(name);
    const contentType = options.contentType ?? 'application/octet-stream';
    // It becomes a header line of the multipart body.
    if (/[\r\n]/.test(contentType)) throw new Error(`invalid content type ${JSON.stringify(contentType)}`);
    const boundary = `kontain-${randomUUID()}`;
    const md5 = createHash('md5');
    const abort = new AbortController();
    let sourceError: unknown;

    const preamble =
      `--${boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n` +
      JSON.stringify({ contentType, metadata: options.metadata ?? {} }) +
      `\r\n--${boundary}\r\nContent-Type: ${contentType}\r\n\r\n`;
    async function* requestBody(): AsyncGenerator<Uint8Array> {
      yield Buffer.from(preamble);
      try {
        for await (const chunk of body) {
          const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer);
          md5.update(bytes);
          yield bytes;
        }
      } catch (err) {
        // Abort the request so the server drops the partial body instead of waiting for more.
        sourceError = err;
        abort.abort(err);
        throw err;
      }
      onSourceDone();
      yield Buffer.from(`\r\n--${boundary}--\r\n`);
    }

    const url = new URL(`${this.endpoint}/upload/storage/v1/b/${encodeURIComponent(this.bucketName)}/o`);
    url.searchParams.set('uploadType', 'multipart');
    url.searchParams.set('name', objectName);
    url.searchParams.set('ifGenerationMatch', '0');
    // Like the library, send no credentials to a custom endpoint.
    const headers = new Headers(this.customEndpoint ? {} : await this.storage.authClient.getRequestHeaders(url.toString()));
    headers.set('Content-Type', `multipart/related; boundary=${boundary}`);

    let response: Response;
    let text: string;
    try {
      response = await fetch(url, {
        method: 'POST',
        headers,
        body: requestBody() as unknown as BodyInit,
        signal: abort.signal,
        duplex: 'half', // required by fetch for a streamed request body
      } as RequestInit);
      text = await response.text();
    } catch (err) {
      throw sourceError ?? new Error(`uploading ${this.describe(name)}: ${errorMessage(err)}`, { cause: err });
    }

    if (response.status === 412) return false; // another writer created it first
    if (!response.ok) throw new Error(`uploading ${this.describe(name)}: GCS answered ${response.status}: ${gcsErrorMessage(text)}`);
    const created = JSON.parse(text) as FileMetadata;
    // End-to-end check, as the client library does for its uploads: the object GCS
    // stored must hash to what was streamed. A mismatch removes exactly that generation.
    if (created.md5Hash && created.md5Hash !== md5.digest('base64')) {
      await this.file(name)
        .delete({ ifGenerationMatch: created.generation })
        .catch(() => undefined);
      throw new Error(`uploading ${this.describe(name)}: stored object's MD5 does not match the bytes sent; it was deleted`);
    }
    return true;
  }

  async moveIfAbsent(from: string, to: string, options: WriteOptions = {}): Promise<boolean> {
    const source = this.file(from);
    // Give the destination explicit metadata: the source's unless the caller gives new ones
    // (an empty rewrite body is not a reliable way to ask GCS to copy them).
    let contentType = options.contentType;
    let metadata = options.metadata;
    if (contentType === undefined && metadata === undefined) {
      const info = await this.stat(from);
      if (!info) throw new ObjectNotFound(from);
      contentType = info.contentType;
      metadata = info.metadata;
    }
    let moved = true;
    try {
      // A rewrite within one bucket (same location and storage class) completes in one
      // call; that matters because the library's rewrite-token continuation calls would
      // not repeat the precondition.
      await source.copy(this.file(to), {
        preconditionOpts: { ifGenerationMatch: 0 },
        contentType: contentType ?? 'application/octet-stream',
        metadata: metadata ?? {},
      });
    } catch (err) {
      const status = statusOf(err);
      if (status === 404) throw new ObjectNotFound(from);
      if (status !== 412) throw err;
      moved = false;
    }
    await this.delete(from);
    return moved;
  }

  /** GCS has no mtime to set; customTime (which may only move forward) records the touch. */
  async touch(name: string): Promise<void> {
    try {
      await this.file(name).setMetadata({ customTime: new Date().toISOString() });
    } catch (err) {
      if (statusOf(err) !== 404) throw err;
    }
  }

  async delete(name: string): Promise<void> {
    await this.file(name).delete({ ignoreNotFound: true });
  }

  async *list(prefix: string): AsyncIterable<{ name: string; info: ObjectInfo }> {
    const bucket = this.storage.bucket(this.bucketName);
    let pageToken: string | undefined;
    do {
      const [files, nextQuery] = await bucket.getFiles({
        prefix: this.prefix + prefix,
        autoPaginate: false,
        maxResults: LIST_PAGE_SIZE,
        ...(pageToken ? { pageToken } : {}),
      });
      for (const file of files) {
        yield { name: file.name.slice(this.prefix.length), info: toObjectInfo(file.metadata) };
      }
      pageToken = (nextQuery as { pageToken?: string } | null | undefined)?.pageToken;
    } while (pageToken);
  }

  async downloadURL(name: string): Promise<string | undefined> {
    switch (this.urlMode) {
      case 'none':
        return undefined;
      case 'public':
        // Path style, each segment escaped but the slashes kept.
        return `${this.endpoint}/${this.bucketName}/${encodeObjectPath(this.objectName(name))}`;
      case 'signed': {
        const [url] = await this.file(name).getSignedUrl({
          version: 'v4',
          action: 'read',
          expires: Date.now() + this.signedUrlExpirySeconds * 1000,
        });
        return url;
      }
    }
  }

  private file(name: string): File {
    return this.storage.bucket(this.bucketName).file(this.objectName(name));
  }

  private objectName(name: string): string {
    if (
      name === '' ||
      name.startsWith('/') ||
      /[\0\r\n]/.test(name) ||
      name.split('/').some((segment) => segment === '' || segment === '.' || segment === '..')
    ) {
      throw new Error(`invalid object name ${JSON.stringify(name)}`);
    }
    return this.prefix + name;
  }

  private describe(name: string): string {
    return `gs://${this.bucketName}/${this.prefix}${name}`;
  }
}

/**
 * Parses `gs://bucket[/prefix]` as given in KONTAIN_STORE. The prefix comes back without
 * leading or trailing slashes ('' for the bucket root).
 */
export function parseGcsStoreUrl(url: string): { bucket: string; prefix: string } {
  const m = /^gs:\/\/([^/?#]*)(\/[^?#]*)?$/.exec(url.trim());
  if (!m) throw new Error(`GCS store must look like gs://bucket or gs://bucket/prefix, not ${JSON.stringify(url)}`);
  const bucket = m[1]!;
  validateBucketName(bucket);
  const prefix = (m[2] ?? '').replace(/^\/+|\/+$/g, '');
  if (prefix && prefix.split('/').some((s) => s === '' || s === '.' || s === '..')) {
    throw new Error(`GCS store prefix ${JSON.stringify(prefix)} must not contain empty, "." or ".." segments`);
  }
  return { bucket, prefix };
}

/** Bucket naming rules from https://cloud.google.com/storage/docs/buckets#naming */
function validateBucketName(bucket: string): void {
  const problem =
    !/^[a-z0-9][a-z0-9._-]*[a-z0-9]$/.test(bucket)
      ? 'use only lowercase letters, digits, "-", "_" and ".", and start and end with a letter or digit'
      : bucket.length < 3 || bucket.length > 222
        ? 'be 3 to 63 characters long (222 with dots)'
        : !bucket.includes('.') && bucket.length > 63
          ? 'be at most 63 characters long without dots'
          : bucket.split('.').some((part) => part.length === 0 || part.length > 63)
            ? 'have dot-separated parts of 1 to 63 characters'
            : /^\d+\.\d+\.\d+\.\d+$/.test(bucket)
              ? 'not look like an IP address'
              : bucket.startsWith('goog') || /g[o0]{2}gle/.test(bucket)
                ? 'not start with "goog" or contain "google"'
                : undefined;
  if (problem) throw new Error(`invalid GCS bucket name ${JSON.stringify(bucket)}: bucket names must ${problem}`);
}

function normalizePrefix(prefix: string): string {
  const trimmed = prefix.replace(/^\/+|\/+$/g, '');
  return trimmed ? `${trimmed}/` : '';
}

function encodeObjectPath(name: string): string {
  return name.split('/').map(encodeURIComponent).join('/');
}

function toObjectInfo(metadata: FileMetadata): ObjectInfo {
  const custom: Record<string, string> = {};
  for (const [key, value] of Object.entries(metadata.metadata ?? {})) {
    if (value !== null && value !== undefined) custom[key] = String(value);
  }
  return {
    size: Number(metadata.size ?? 0),
    contentType: metadata.contentType ?? 'application/octet-stream',
    metadata: custom,
    // The later of creation and the last touch.
    created: new Date(Math.max(Date.parse(metadata.timeCreated ?? '') || 0, Date.parse(metadata.customTime ?? '') || 0)),
  };
}

/** HTTP status of an error from the client library (ApiError has `code`, GaxiosError `status`). */
function statusOf(err: unknown): number | undefined {
  const e = err as { code?: unknown; status?: unknown; response?: { status?: unknown } } | null;
  for (const value of [e?.code, e?.status, e?.response?.status]) {
    if (typeof value === 'number') return value;
  }
  return undefined;
}

function gcsErrorMessage(text: string): string {
  try {
    const parsed = JSON.parse(text) as { error?: { message?: string } };
    if (parsed.error?.message) return parsed.error.message;
  } catch {
    // not JSON: fall through to the raw text
  }
  return text.slice(0, 500);
}

function errorMessage(err: unknown): string {
  const e = err as { message?: string; cause?: { message?: string } };
  return e.cause?.message ? `${e.message}: ${e.cause.message}` : (e.message ?? String(err));
}
