/**
 * When to try an upstream request again, and how long to wait first: exponential backoff
 * with jitter, or the upstream's own `Retry-After` when it gives one — unless that asks
 * for longer than we are willing to hold a puller, in which case we give up at once.
 */

export interface RetryPolicy {
  /** Further attempts after the first. */
  retries: number;
  /** First backoff; doubles per attempt. */
  baseMs: number;
  /** Backoff ceiling. */
  maxDelayMs: number;
  /** Longest `Retry-After` honoured; a longer one fails the request now. */
  maxRetryAfterMs: number;
}

/** 429 and server errors that may pass (not 501/505, which will not). */
export function isRetryableStatus(status: number): boolean {
  return status === 429 || (status >= 500 && status <= 599 && status !== 501 && status !== 505);
}

/** `Retry-After` as delay-seconds or an HTTP date, in milliseconds from `now`. */
export function parseRetryAfter(value: string | undefined, now = Date.now()): number | undefined {
  if (!value) return undefined;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  const date = Date.parse(text);
  return Number.isFinite(date) ? Math.max(0, date - now) : undefined;
}

/**
 * How long to wait before attempt `attempt + 1` (attempt counts from 0), or undefined when
 * no retry should be made.
 */
export function retryDelay(policy: RetryPolicy, attempt: number, retryAfter?: string, random = Math.random): number | undefined {
  if (attempt >= policy.retries) return undefined;
  const asked = parseRetryAfter(retryAfter);
  if (asked !== undefined) return asked <= policy.maxRetryAfterMs ? asked : undefined;
  const backoff = Math.min(policy.maxDelayMs, policy.baseMs * 2 ** attempt);
  // Full jitter in the upper half, so many pullers hitting one limit do not retry in step.
  return Math.round(backoff / 2 + (random() * backoff) / 2);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
