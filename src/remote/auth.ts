/**
 * Registry authentication as clients do it: answer a 401's `WWW-Authenticate` challenge
 * with Basic credentials or a Bearer token from the challenge's realm, and remember per
 * registry and scope which it was so later requests authenticate up front (one round
 * trip, not two). A challenge is remembered only once it worked, for a limited time, and
 * forgotten when it stops working: one repository's answer never decides another's.
 */
import { LRUCache } from 'lru-cache';
import { SingleFlight } from '../util/single-flight.js';
import type { Credentials } from './credentials.js';
import { UpstreamError } from './errors.js';

export interface Challenge {
  /** Lowercased: `bearer`, `basic`, … */
  scheme: string;
  /** Parameter names lowercased, values unquoted. */
  params: Record<string, string>;
}

/**
 * Parses `WWW-Authenticate` (RFC 9110 §11.6.1): one or more challenges per header line,
 * parameters with quoted values that may hold commas, spaces and `\`-escapes.
 */
export function parseWwwAuthenticate(header: string | string[] | undefined): Challenge[] {
  const lines = header === undefined ? [] : Array.isArray(header) ? header : [header];
  return lines.flatMap(parseLine);
}

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+/;

function parseLine(text: string): Challenge[] {
  const challenges: Challenge[] = [];
  let i = 0;
  const skip = (chars: RegExp) => {
    while (i < text.length && chars.test(text[i]!)) i++;
  };
  const token = (): string | undefined => {
    const m = TOKEN.exec(text.slice(i));
    if (!m) return undefined;
    i += m[0].length;
    return m[0];
  };
  const quoted = (): string => {
    let out = '';
    i++; // opening quote
    while (i < text.length && text[i] !== '"') {
      if (text[i] === '\\' && i + 1 < text.length) i++;
      out += text[i++];
    }
    i++; // closing quote
    return out;
  };

  // Lenient: unquoted values up to the next comma or space (some servers leave URLs unquoted).
  const bare = (): string => {
    const m = /^[^,\s]*/.exec(text.slice(i))!;
    i += m[0].length;
    return m[0];
  };

  let current: Challenge | undefined;
  while (i < text.length) {
    skip(/[\s,]/);
    const name = token();
    if (!name) {
      i++; // unparseable character: skip it rather than loop forever
      continue;
    }
    skip(/[ \t]/);
    if (text[i] === '=') {
      i++;
      skip(/[ \t]/);
      const value = text[i] === '"' ? quoted() : bare();
      // A parameter before any scheme has no challenge to belong to.
      if (current) current.params[name.toLowerCase()] = value;
      continue;
    }
    current = { scheme: name.toLowerCase(), params: {} };
    challenges.push(current);
  }
  return challenges;
}

/** `repository:<name>:pull`, the scope a read-only client asks for. */
export function pullScope(repository: string): string {
  return `repository:${repository}:pull`;
}

export interface Token {
  token: string;
  /** Epoch milliseconds after which the cached token is not used. */
  usableUntil: number;
}

/** What the authenticator needs from the transport: a GET that returns a (small) body. */
export type TokenFetch = (registry: string, url: URL, headers: Record<string, string>) => Promise<{ status: number; body: Buffer }>;

export interface AuthenticatorOptions {
  credentials: (registry: string) => Promise<Credentials | undefined>;
  fetch: TokenFetch;
  now?: () => number;
  /** Stop using a token this long before it expires, so it does not expire in flight. */
  skewMs?: number;
  /** How long a challenge that worked is used up front before it is learned again. */
  challengeTTLms?: number;
}

const MIN_EXPIRES_IN_S = 60;

type Known = { scheme: 'basic' } | { scheme: 'bearer'; realm: string; service?: string };

/** Challenges remembered at once; the least recently used go first. */
const MAX_KNOWN = 10_000;

export class Authenticator {
  /** By registry and scopes (see knownKey): what worked, and until when it is used. */
  private readonly known = new LRUCache<string, { known: Known; until: number }>({ max: MAX_KNOWN });
  private readonly tokens = new Map<string, Token>();
  private readonly fetching = new SingleFlight<Token>();
  private readonly now: () => number;
  private readonly skewMs: number;
  private readonly challengeTTLms: number;

  constructor(private readonly options: AuthenticatorOptions) {
    this.now = options.now ?? Date.now;
    this.skewMs = options.skewMs ?? 10_000;
    this.challengeTTLms = options.challengeTTLms ?? 3600_000;
  }

  /**
   * The Authorization header to send up front, once a challenge for these scopes worked.
   * When it no longer does (the token server fails), it is forgotten and the request goes
   * without, so the registry's next 401 says afresh what it wants.
   */
  async authorization(registry: string, scopes: string[]): Promise<string | undefined> {
    const key = knownKey(registry, scopes);
    const entry = this.known.get(key);
    if (!entry) return undefined;
    if (entry.until <= this.now()) {
      this.known.delete(key);
      return undefined;
    }
    const { known } = entry;
    if (known.scheme === 'basic') return basicHeader(await this.options.credentials(registry));
    try {
      return `Bearer ${(await this.token(registry, known, scopes)).token}`;
    } catch {
      this.known.delete(key);
      return undefined;
    }
  }

  private remember(registry: string, scopes: string[], known: Known): void {
    this.known.set(knownKey(registry, scopes), { known, until: this.now() + this.challengeTTLms });
  }

  /**
   * After a 401: learns the challenge and returns the header to retry with, or undefined
   * when there is no way to authenticate (Basic without credentials, unknown scheme).
   * `sent` is the Authorization that was refused, so a stale token is not handed out again.
   */
  async answer(registry: string, wwwAuthenticate: string | string[] | undefined, scopes: string[], sent?: string): Promise<string | undefined> {
    const challenges = parseWwwAuthenticate(wwwAuthenticate);
    const bearer = challenges.find((c) => c.scheme === 'bearer' && c.params.realm);
    if (bearer) {
      const known: Known = { scheme: 'bearer', realm: bearer.params.realm!, service: bearer.params.service };
      // insufficient_scope names what the registry wants: ask for it as well.
      const wanted = new Set(scopes);
      for (const s of (bearer.params.scope ?? '').split(' ').filter(Boolean)) wanted.add(s);
      const all = [...wanted];
      if (sent?.startsWith('Bearer ')) this.forget(sent.slice(7));
      this.known.delete(knownKey(registry, scopes));
      const token = await this.token(registry, known, all);
      // Only a challenge that gave a token is used up front later.
      this.remember(registry, scopes, known);
      return `Bearer ${token.token}`;
    }
    if (challenges.some((c) => c.scheme === 'basic')) {
      const header = basicHeader(await this.options.credentials(registry));
      this.remember(registry, scopes, { scheme: 'basic' });
      // The same credentials were just refused: retrying cannot help.
      if (header !== sent) return header;
      this.known.delete(knownKey(registry, scopes));
      return undefined;
    }
    return undefined;
  }

  private async token(registry: string, known: Extract<Known, { scheme: 'bearer' }>, scopes: string[]): Promise<Token> {
    const credentials = await this.options.credentials(registry);
    const key = cacheKey(known, scopes, credentials);
    const cached = this.tokens.get(key);
    if (cached && cached.usableUntil > this.now()) return cached;
    return this.fetching.run(key, async () => {
      const token = await this.fetchToken(registry, known, scopes, credentials);
      this.prune();
      this.tokens.set(key, token);
      return token;
    });
  }

  private forget(token: string): void {
    for (const [key, value] of this.tokens) if (value.token === token) this.tokens.delete(key);
  }

  private prune(): void {
    if (this.tokens.size < 1000) return;
    const now = this.now();
    for (const [key, value] of this.tokens) if (value.usableUntil <= now) this.tokens.delete(key);
  }

  private async fetchToken(
    registry: string,
    known: Extract<Known, { scheme: 'bearer' }>,
    scopes: string[],
    credentials: Credentials | undefined,
  ): Promise<Token> {
    let url: URL;
    try {
      url = new URL(known.realm);
    } catch {
      throw new UpstreamError({ registry, status: 401, code: 'UNAUTHORIZED', message: `upstream ${registry} named an invalid token realm ${JSON.stringify(known.realm)}` });
    }
    if (known.service) url.searchParams.set('service', known.service);
    for (const scope of scopes) url.searchParams.append('scope', scope);
    const headers: Record<string, string> = { Accept: 'application/json' };
    const basic = basicHeader(credentials);
    if (basic) headers.Authorization = basic;

    const requested = this.now();
    const { status, body } = await this.options.fetch(registry, url, headers);
    if (status !== 200) {
      throw new UpstreamError({
        registry,
        status,
        code: status === 401 ? 'UNAUTHORIZED' : status === 403 ? 'DENIED' : undefined,
        // The configured user name is the operator's: it is never shown to clients.
        message: `token server ${url.origin}${url.pathname} for upstream ${registry} answered ${status}${credentials ? ' to kontain\'s configured credentials' : ' to an anonymous request'}`,
      });
    }
    return parseTokenResponse(registry, body, requested, this.skewMs);
  }
}

/** `token` (or OAuth2's `access_token`), usable for `expires_in` (default and minimum 60 s). */
export function parseTokenResponse(registry: string, body: Buffer, requestedAt: number, skewMs: number): Token {
  let parsed: { token?: unknown; access_token?: unknown; expires_in?: unknown; issued_at?: unknown };
  try {
    parsed = JSON.parse(body.toString('utf8')) as typeof parsed;
  } catch {
    throw new UpstreamError({ registry, status: 200, code: 'UNAUTHORIZED', message: `token server for upstream ${registry} answered with something that is not JSON` });
  }
  const token = typeof parsed.token === 'string' && parsed.token ? parsed.token : parsed.access_token;
  if (typeof token !== 'string' || !token) {
    throw new UpstreamError({ registry, status: 200, code: 'UNAUTHORIZED', message: `token server for upstream ${registry} answered without a token` });
  }
  const expiresIn = Math.max(MIN_EXPIRES_IN_S, typeof parsed.expires_in === 'number' ? parsed.expires_in : 0);
  // Count from whichever is earlier, our request or the server's issued_at, so neither a
  // slow answer nor a token server's cached token makes us use a token past its life.
  const issuedAt = typeof parsed.issued_at === 'string' ? Date.parse(parsed.issued_at) : NaN;
  const start = Number.isFinite(issuedAt) ? Math.min(issuedAt, requestedAt) : requestedAt;
  return { token, usableUntil: start + expiresIn * 1000 - skewMs };
}

function basicHeader(credentials: Credentials | undefined): string | undefined {
  if (!credentials) return undefined;
  return `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64')}`;
}

/** A remembered challenge is for one registry and the scopes it was answered for. */
function knownKey(registry: string, scopes: string[]): string {
  return JSON.stringify([registry, [...scopes].sort()]);
}

function cacheKey(known: Extract<Known, { scheme: 'bearer' }>, scopes: string[], credentials: Credentials | undefined): string {
  return JSON.stringify([known.realm, known.service ?? '', [...scopes].sort(), credentials?.username ?? '']);
}
