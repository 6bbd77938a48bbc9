import pino from 'pino';

export const REDACTED = '[REDACTED]';

/** Object keys whose values are secrets wherever they appear (headers, configs, bodies). */
const SECRET_KEY =
  /^(authorization|proxy-authorization|cookie|set-cookie|x-kontain-task-secret|password|passwd|secret|client_secret|token|access_token|refresh_token|id_token|identitytoken|registrytoken|auth|private_key|api_key|apikey)$/i;
/** `Bearer <token>` / `Basic <base64>` anywhere in a text. */
const AUTH_SCHEME = /\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+/gi;
/** `secret: value`, `"password":"value"`, `token=value` in messages that echo a request. */
const SECRET_ASSIGNMENT =
  /\b((?:x-kontain-task-secret|authorization|password|passwd|secret|client_secret|access_token|refresh_token|id_token|token|api[_-]?key)["']?\s*[:=]\s*["']?)(?!\[REDACTED\])[^\s"',;&}]+/gi;
/** `scheme://user:password@host` */
const URL_PASSWORD = /(\/\/[^\s/:@]+:)[^\s/@]+@/g;
/** A cheap first look: text without any of these needs none of the replacements above. */
const MAYBE_SECRET = /bearer|basic|secret|passw|token|authorization|api[_-]?key|@/i;
/** Deeper than this an object is cut (errors can hold sockets, agents, whole clients). */
const MAX_DEPTH = 8;
/** Exact secrets shorter than this are not searched for: too likely to match ordinary text. */
const MIN_SECRET_LENGTH = 8;

/** Removes secrets from a text: known values, auth schemes, `key: value` pairs, URL passwords. */
export function scrubText(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const secret of secrets) if (secret.length >= MIN_SECRET_LENGTH && out.includes(secret)) out = out.split(secret).join(REDACTED);
  if (!MAYBE_SECRET.test(out)) return out;
  return out.replace(AUTH_SCHEME, `$1 ${REDACTED}`).replace(SECRET_ASSIGNMENT, `$1${REDACTED}`).replace(URL_PASSWORD, `$1${REDACTED}@`);
}

/**
 * A copy of a log line's fields with secrets removed: values under secret keys at any
 * depth, and secrets inside strings (error messages and stacks echo requests). Errors are
 * serialised here (message, stack, their own fields, cause), so whatever key holds one,
 * what they carry is scrubbed too. pino's own `redact` takes fixed paths only; an error
 * from a client library can echo a header at any depth or inside its message.
 */
export function scrubLogFields(value: unknown, secrets: readonly string[], depth = 0, seen = new WeakSet<object>()): unknown {
  if (typeof value === 'string') return scrubText(value, secrets);
  if (value === null || typeof value !== 'object') return value;
  if (seen.has(value)) return '[Circular]';
  if (depth >= MAX_DEPTH) return '[Object]';
  seen.add(value);
  if (value instanceof Error) return scrubLogFields(pino.stdSerializers.err(value), secrets, depth, seen);
  if (Buffer.isBuffer(value)) return scrubText(value.toString('utf8', 0, Math.min(value.length, 4096)), secrets);
  if (Array.isArray(value)) return value.map((item) => scrubLogFields(item, secrets, depth + 1, seen));
  const out: Record<string, unknown> = {};
  for (const [key, item] of Object.entries(value)) {
    out[key] = SECRET_KEY.test(key) && item !== undefined && item !== null && item !== '' ? REDACTED : scrubLogFields(item, secrets, depth + 1, seen);
  }
  return out;
}
