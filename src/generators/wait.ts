import type { ContentStore } from '../content/store.js';
import { familyOf, type FormatFamily } from '../oci/mediatypes.js';
import type { Descriptor } from '../oci/types.js';
import { RegistryError } from '../registry/errors.js';
import { createBuildFacility } from '../builds/index.js';
import type { BuildFacility } from '../builds/facility.js';
import type { Generator, GeneratorContext, TagRequest } from './generator.js';
import { writeInFamily } from '../oci/family.js';
import type { AcceptedTypes } from '../registry/accept.js';

const SERVICE = 'wait';
export const WAIT_MAX_MS = 3600 * 1000;
export const WAIT_LATEST_MS = 10 * 1000;
export const WAIT_IMAGE = { layers: 10, size: 100 };

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
  family: FormatFamily;
}

/**
 * `wait`: `wait/<name>:<duration>` is an image that exists only some time after it was
 * first asked for (kontain.me's wait service). It is delayed work of the slow-work
 * facility (src/builds/facility.ts): the first pull writes the attempt record with its
 * due time and enqueues the task with that delay; every pull until then is answered at
 * once MANIFEST_UNKNOWN "not ready yet: it will be ready at <time> (in N s)" with
 * Retry-After N, and starts nothing. The task makes 10 layers of 100 random bytes, in the
 * media types the first puller preferred, served (by tag and digest) until the pointer
 * expires; a pull after that starts a new wait. A pull at the due time holds (at most
 * KONTAIN_BUILD_HOLD) while the task makes the image.
 */
export class WaitGenerator implements Generator {
  readonly service = SERVICE;
  private readonly store: ContentStore;
  private readonly facility: BuildFacility;

  constructor(context: GeneratorContext) {
    this.store = context.store;
    // A generator made on its own (unit tests) gets a facility over its store and queue.
    this.facility = context.builds ?? createBuildFacility(context);
    // Its own task name: Cloud Tasks shows `/_tasks/wait`, and tasks enqueued before wait
    // moved onto the facility (a placeholder's key and ready time) are recognised and dropped.
    // random.js (and its tar writer) is imported when the work runs, not at start.
    this.facility.register(SERVICE, async (payload) => (await import('./random.js')).writeRandomImage(this.store, WAIT_IMAGE, parsePayload(payload).family), {
      task: 'wait',
      isStale: (raw) => {
        const p = raw as { key?: unknown; readyAt?: unknown; attempt?: unknown } | null;
        return typeof p?.key === 'string' && typeof p.readyAt === 'string' && p.attempt === undefined;
      },
    });
  }

  /**
   * The image is made once, in the form its first puller preferred; a client that does
   * not take that form gets the same image described in the other family.
   */
  async manifest(request: TagRequest): Promise<Descriptor> {
    const waitMs = parseWaitTag(request.tag);
    const key = `${request.repository}:${request.tag}`;
    const payload: WaitPayload = { family: request.accept.preferredFamily() };
    const image = await this.facility.obtain(
      { kind: SERVICE, service: SERVICE, key, label: `wait/${key}`, payload: { ...payload }, delaySeconds: waitMs / 1000 },
      { baseUrl: request.baseUrl, log: request.log },
    );
    return this.inAcceptedForm(image, request.accept);
  }

  private async inAcceptedForm(descriptor: Descriptor, accept: AcceptedTypes): Promise<Descriptor> {
    if (accept.accepts(descriptor.mediaType)) return descriptor;
    const stored = await this.store.getManifest(descriptor.digest);
    const twin = stored && (await writeInFamily(this.store, stored, familyOf(descriptor.mediaType) === 'oci' ? 'docker' : 'oci'));
    return twin && accept.accepts(twin.mediaType) ? twin : descriptor;
  }
}

function parsePayload(raw: unknown): WaitPayload {
  const p = raw as Partial<WaitPayload> | null;
  if (!p || (p.family !== 'oci' && p.family !== 'docker')) throw new Error(`not a wait task payload: ${JSON.stringify(raw)?.slice(0, 200)}`);
  return { family: p.family };
}
