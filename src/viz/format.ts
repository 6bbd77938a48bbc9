/** How the graph writes digests and sizes for people. */

/** The first 12 hex digits of a digest, as `docker images` shows image IDs. */
export function shortDigest(digest: string): string {
  const colon = digest.indexOf(':');
  return digest.slice(colon + 1, colon + 13);
}

const UNITS = ['kB', 'MB', 'GB', 'TB'];

/** Decimal units with three significant digits, as docker prints sizes: `812 B`, `3.21 MB`. */
export function humanSize(bytes: number): string {
  if (bytes < 1000) return `${bytes} B`;
  let value = bytes;
  let unit = -1;
  while (value >= 999.5 && unit < UNITS.length - 1) {
    value /= 1000;
    unit++;
  }
  const digits = value >= 100 ? 0 : value >= 10 ? 1 : 2;
  return `${value.toFixed(digits)} ${UNITS[unit]}`;
}

/** `linux/arm64/v8` */
export function formatPlatform(platform: { os: string; architecture: string; variant?: string }): string {
  return [platform.os, platform.architecture, platform.variant].filter(Boolean).join('/');
}
