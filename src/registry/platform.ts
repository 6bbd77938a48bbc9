import type { Descriptor, Platform } from '../oci/types.js';

/** Names containerd normalises, so `x86_64` in an index matches a request for amd64. */
const ARCH_ALIASES: Record<string, string> = { x86_64: 'amd64', aarch64: 'arm64', i386: '386' };

function normalArch(arch: string): string {
  return ARCH_ALIASES[arch] ?? arch;
}

/**
 * The index entry for a platform: the first entry whose os and architecture match (and
 * variant, when asked for). An index with a single image entry yields that entry.
 */
export function selectPlatform(manifests: Descriptor[], wanted: Platform): Descriptor | undefined {
  const images = manifests.filter((m) => m.platform?.os !== 'unknown');
  const match = images.find(
    (m) =>
      m.platform &&
      m.platform.os === wanted.os &&
      normalArch(m.platform.architecture) === normalArch(wanted.architecture) &&
      (!wanted.variant || m.platform.variant === wanted.variant),
  );
  if (match) return match;
  return images.length === 1 ? images[0] : undefined;
}

/** Parses `linux/arm64/v8` style platform strings. */
export function parsePlatform(text: string): Platform | undefined {
  const [os, architecture, variant] = text.split('/');
  if (!os || !architecture) return undefined;
  return variant ? { os, architecture, variant } : { os, architecture };
}
