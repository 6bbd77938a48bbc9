import type { Logger } from 'pino';
import { ContentStore, type Pointer } from '../content/store.js';
import { isSha256Digest } from '../oci/digest.js';
import { familyOf, type FormatFamily } from '../oci/mediatypes.js';
import type { Descriptor } from '../oci/types.js';
import { RegistryError } from '../registry/errors.js';
import type { TaskQueue } from '../tasks/queue.js';
import type { Generator, GeneratorContext, TagRequest } from './generator.js';
import { writeRandomImage } from './random.js';
import { writeInFamily } from '../oci/family.js';
import type { AcceptedTypes } from '../registry/accept.js';

const SERVICE = 'wait';
const TASK = 'wait';
export const WAIT_MAX_MS = 3600 * 1000;
export const WAIT_LATEST_MS = 10 * 1000;
export const WAIT_IMAGE = { layers: 10, size: 100 };
/**
 * A placeholder this far past its ready time means its task was lost (or failed for
 * good): the next pull makes the image itself instead of promising it forever.
 */
const LOST_AFTER_MS = 10 * 60 * 1000;
/** What a pull past the ready time, while the task is still running, is told to wait. */
const DUE_RETRY_SECONDS = 2;

/** A placeholder pointer: a descriptor with no manifest behind it, carrying the ready time. */
const PLACEHOLDER_TYPE = 'application/vnd.kontain.wait.placeholder+json';
const READY_AT = 'me.kontain.wait.ready-at';

const UNIT_NS: Record<string, bigint> = {
  ns: 1n,
  us: 1_000n,
  'µs': 1_000n, // U+00B5 micro sign
  'μs': 1_000n, // U+03BC Greek mu
  ms: 1_000_000n,
  s: 1_000_000_000n,
  m: 60_000_000_000n,
  h: 3_600_000_000_000n,
};
/** Go durations are int64 nanoseconds. */
const MAX_DURATION_NS = 2n ** 63n - 1n;

/**
 * Go's time.ParseDuration: a sequence of decimal numbers, each with an optional
 * fraction and a unit (`300ms`, `1.5h`, `2h45m`), optionally signed; `0` needs no unit.
 * Returns nanoseconds; throws on anything Go would refuse.
 */
export function parseGoDuration(text: string): number {
  let s = text;
  let sign = 1;
  if (s.startsWith('-') || s.startsWith('+')) {
    if (s[0] === '-') sign = -1;
    s = s.slice(1);
  }
  if (s === '0') return 0;
  if (s === '') throw new Error(`invalid duration ${JSON.stringify(text)}`);
  // Integer nanoseconds as Go keeps them, so limits and truncation match exactly.
  let total = 0n;
  const part = /^(\d*)(?:\.(\d*))?([^\d.]*)/;
  while (s !== '') {
    const match = part.exec(s)!;
    const [all, whole = '', fraction, unit = ''] = match;
    // A number needs digits on at least one side of the point: `.5s` and `1.s` are fine, `.s` is not.
    if (whole === '' && (fraction ?? '') === '') throw new Error(`invalid duration ${JSON.stringify(text)}`);
    if (unit === '') throw new Error(`missing unit in duration ${JSON.stringify(text)}`);
    const scale = UNIT_NS[unit];
    if (scale === undefined) throw new Error(`unknown unit ${JSON.stringify(unit)} in duration ${JSON.stringify(text)}`);
    // Go truncates below a nanosecond.
    const digits = fraction ?? '';
    total += BigInt(whole || '0') * scale + (BigInt(digits || '0') * scale) / 10n ** BigInt(digits.length);
    if (total > MAX_DURATION_NS) throw new Error(`invalid duration ${JSON.stringify(text)}: too large`);
    s = s.slice(all.length);
  }
  return sign * Number(total);
}

/** The wait a tag asks for, in milliseconds: a Go duration up to one hour; `latest` is 10 s. */
export function parseWaitTag(tag: string): number {
  if (tag === 'latest') return WAIT_LATEST_MS;
  let ns: number;
  try {
    ns = parseGoDuration(tag);
  } catch (err) {
    throw new RegistryError(
      'MANIFEST_UNKNOWN',
      `tag ${tag} is not a duration: ${(err as Error).message}; use a Go duration such as 30s, 1m30s or 500ms (at most 1h), or latest for 10s`,
    );
  }
  if (ns < 0) throw new RegistryError('MANIFEST_UNKNOWN', `tag ${tag} is a negative duration; use one between 0s and 1h`);
  const ms = ns / 1e6;
  if (ms > WAIT_MAX_MS) {
    throw new RegistryError('MANIFEST_UNKNOWN', `tag ${tag} asks to wait longer than the limit of 1h; use a duration of at most 1h (for example 59m or 1h)`);
  }
  return ms;
}

interface WaitPayload {
  key: string;
  readyAt: string;
  family: FormatFamily;
}

/**
 * `wait`: `wait/<name>:<duration>` is an image that exists only some time after it was
 * first asked for (kontain.me's wait service). The first pull writes a placeholder
 * pointer holding the ready time, enqueues a task to make the image then, and answers
 * MANIFEST_UNKNOWN saying when to come back (with Retry-After). Pulls until then get the
 * same answer without a second task. The task makes 10 layers of 100 random bytes and
 * replaces the placeholder with a pointer to them, served (by tag and digest) until the
 * pointer expires; a pull after that starts a new wait.
 */
export class WaitGenerator implements Generator {
  readonly service = SERVICE;
  readonly summary =
    'An image that appears only a while after you first ask for it: the first pull of wait/NAME:DURATION (a Go duration such as 30s or 1m30s, at most 1h; latest is 10s) starts the clock and says when to come back; after that you get 10 layers of 100 random bytes.';
  readonly examples = ['wait/x:30s', 'wait/hello:1m30s'];
  private readonly store: ContentStore;
  private readonly tasks?: TaskQueue;
  private readonly log: Logger;
  /** Builds under way in this process, by key: pulls during one wait for it instead of seeing the pointer swap. */
  private readonly building = new Map<string, Promise<Descriptor | undefined>>();

  constructor(context: GeneratorContext) {
    this.store = context.store;
    this.tasks = context.tasks;
    this.log = context.log;
    this.tasks?.handle(TASK, (payload) => this.runTask(payload));
  }

  /**
   * The image is made once, in the form its first puller preferred; a client that does
   * not take that form gets the same image described in the other family.
   */
  async manifest(request: TagRequest): Promise<Descriptor> {
    return this.inAcceptedForm(await this.image(request), request.accept);
  }

  private async inAcceptedForm(descriptor: Descriptor, accept: AcceptedTypes): Promise<Descriptor> {
    if (accept.accepts(descriptor.mediaType)) return descriptor;
    const stored = await this.store.getManifest(descriptor.digest);
    const twin = stored && (await writeInFamily(this.store, stored, familyOf(descriptor.mediaType) === 'oci' ? 'docker' : 'oci'));
    return twin && accept.accepts(twin.mediaType) ? twin : descriptor;
  }

  private async image(request: TagRequest): Promise<Descriptor> {
    const waitMs = parseWaitTag(request.tag);
    const key = `${request.repository}:${request.tag}`;
    const ref = `wait/${key}`;
    // Bounded: each round either answers or lost a race to another puller, whose
    // placeholder the next round reads.
    for (let round = 0; round < 3; round++) {
      // A failed build is the task's to retry; this pull just looks at the pointer.
      const inFlight = await this.building.get(key)?.catch(() => undefined);
      if (inFlight) return inFlight;
      const pointer = await this.store.getPointer(SERVICE, key, { allowExpired: true });
      const now = Date.now();
      if (pointer && isImagePointer(pointer)) {
        const live = now - Date.parse(pointer.created) <= this.store.pointerTTLms;
        if (live && (await this.store.getManifest(pointer.descriptor.digest))) return pointer.descriptor;
        // Expired (or collected): a new wait begins, as if never asked.
      } else if (pointer) {
        const readyAt = readyAtOf(pointer);
        if (readyAt !== undefined) {
          const readyMs = Date.parse(readyAt);
          if (now < readyMs) throw notReady(ref, readyMs, now);
          if (now < readyMs + LOST_AFTER_MS) {
            throw new RegistryError(
              'MANIFEST_UNKNOWN',
              `${ref} was due at ${readyAt} and is being made now; pull again in a few seconds`,
              { headers: { 'Retry-After': String(DUE_RETRY_SECONDS) }, detail: { readyAt, retryAfterSeconds: DUE_RETRY_SECONDS } },
            );
          }
          request.log.warn({ key, readyAt }, 'wait task never finished; making the image on this pull');
          const made = await this.build({ key, readyAt, family: request.accept.preferredFamily() });
          if (made) return made;
          continue; // replaced meanwhile: look again
        }
      }
      const readyMs = await this.startWait(key, waitMs, request.accept.preferredFamily(), pointer);
      if (readyMs !== undefined) {
        request.log.info({ key, readyAt: new Date(readyMs).toISOString() }, 'wait started');
        throw notReady(ref, readyMs, Date.now());
      }
    }
    throw new RegistryError('UNAVAILABLE', `${ref} is being changed by several pulls at once; pull again`, { headers: { 'Retry-After': '1' } });
  }

  /**
   * Enqueues the task, then writes the placeholder (create-if-absent, so concurrent first
   * pulls make one). Undefined when another puller's placeholder got there first; its
   * task is the one that counts, and ours will find another ready time and do nothing.
   * In this order a crash between the two writes leaves a task without a placeholder,
   * which makes the image when due (see build), never a placeholder that promises an
   * image no task will make.
   */
  private async startWait(key: string, waitMs: number, family: FormatFamily, previous: Pointer | undefined): Promise<number | undefined> {
    if (!this.tasks) throw new RegistryError('UNAVAILABLE', 'the wait host needs a task queue, and this server was started without one');
    if (previous) {
      // Replace the stale pointer only if it is still the one we judged stale.
      const current = await this.store.getPointer(SERVICE, key, { allowExpired: true });
      if (current && current.created !== previous.created) return undefined;
      await this.store.deletePointer(SERVICE, key);
    }
    const readyMs = Date.now() + waitMs;
    const readyAt = new Date(readyMs).toISOString();
    const payload: WaitPayload = { key, readyAt, family };
    // The ready time is in the key: a later wait for the same tag is different work.
    await this.tasks.enqueue(TASK, { ...payload }, waitMs / 1000, { dedupeKey: `${key}@${readyAt}` });
    const placeholder: Descriptor = { mediaType: PLACEHOLDER_TYPE, digest: 'none', size: 0, annotations: { [READY_AT]: readyAt } };
    return (await this.store.createPointer(SERVICE, key, placeholder)) ? readyMs : undefined;
  }

  private async runTask(raw: unknown): Promise<void> {
    const payload = parsePayload(raw);
    const descriptor = await this.build(payload);
    // Stale is done, not failed: retrying would not bring the placeholder back.
    if (!descriptor) this.log.info({ key: payload.key, readyAt: payload.readyAt }, 'wait task no longer has its placeholder; nothing to do');
    else this.log.info({ key: payload.key, digest: descriptor.digest }, 'wait image ready');
  }

  /**
   * Makes the image for the placeholder the payload names, once: a duplicate delivery
   * gets the image already made; a task whose placeholder was since replaced or
   * removed makes nothing (undefined).
   */
  private build(payload: WaitPayload): Promise<Descriptor | undefined> {
    const existing = this.building.get(payload.key);
    if (existing) return existing;
    const promise = (async () => {
      const pointer = await this.store.getPointer(SERVICE, payload.key, { allowExpired: true });
      if (pointer && isImagePointer(pointer) && (await this.store.getManifest(pointer.descriptor.digest))) return pointer.descriptor;
      if (pointer && readyAtOf(pointer) !== payload.readyAt) return undefined;
      // No pointer at all: the placeholder was never written (a crash after the enqueue) or
      // not yet (a 0s wait's task may run first). The image is due either way.
      const descriptor = await writeRandomImage(this.store, WAIT_IMAGE, payload.family);
      if (pointer || !(await this.store.createPointer(SERVICE, payload.key, descriptor))) {
        const current = await this.store.getPointer(SERVICE, payload.key, { allowExpired: true });
        if (!current || readyAtOf(current) !== payload.readyAt) return current && isImagePointer(current) ? current.descriptor : undefined;
        await this.store.setPointer(SERVICE, payload.key, descriptor);
      }
      return descriptor;
    })().finally(() => this.building.delete(payload.key));
    this.building.set(payload.key, promise);
    return promise;
  }
}

function isImagePointer(pointer: Pointer): boolean {
  return isSha256Digest(pointer.descriptor?.digest ?? '');
}

function readyAtOf(pointer: Pointer): string | undefined {
  if (pointer.descriptor?.mediaType !== PLACEHOLDER_TYPE) return undefined;
  const readyAt = pointer.descriptor.annotations?.[READY_AT];
  return readyAt && !Number.isNaN(Date.parse(readyAt)) ? readyAt : undefined;
}

function notReady(ref: string, readyMs: number, now: number): RegistryError {
  const seconds = Math.max(1, Math.ceil((readyMs - now) / 1000));
  const readyAt = new Date(readyMs).toISOString();
  return new RegistryError('MANIFEST_UNKNOWN', `${ref} is not ready yet: it will be ready at ${readyAt} (in ${seconds} s); pull again then`, {
    headers: { 'Retry-After': String(seconds) },
    detail: { readyAt, retryAfterSeconds: seconds },
  });
}

function parsePayload(raw: unknown): WaitPayload {
  const p = raw as Partial<WaitPayload> | null;
  if (
    !p ||
    typeof p.key !== 'string' ||
    typeof p.readyAt !== 'string' ||
    Number.isNaN(Date.parse(p.readyAt)) ||
    (p.family !== 'oci' && p.family !== 'docker')
  ) {
    throw new Error(`not a wait task payload: ${JSON.stringify(raw)?.slice(0, 200)}`);
  }
  return { key: p.key, readyAt: p.readyAt, family: p.family };
}
