/** Architecture names: apko configurations use OCI/Go names, apk repositories their own. */
import type { Platform } from '../oci/types.js';

const PLATFORMS: Record<string, { architecture: string; variant?: string }> = {
  x86_64: { architecture: 'amd64' },
  aarch64: { architecture: 'arm64' },
  x86: { architecture: '386' },
  armv7: { architecture: 'arm', variant: 'v7' },
  armhf: { architecture: 'arm', variant: 'v6' },
  ppc64le: { architecture: 'ppc64le' },
  s390x: { architecture: 's390x' },
  riscv64: { architecture: 'riscv64' },
  loongarch64: { architecture: 'loong64' },
};

const FROM_OCI: Record<string, string> = {
  amd64: 'x86_64',
  arm64: 'aarch64',
  'arm64/v8': 'aarch64',
  '386': 'x86',
  'arm/v7': 'armv7',
  'arm/v6': 'armhf',
  ppc64le: 'ppc64le',
  s390x: 's390x',
  riscv64: 'riscv64',
  loong64: 'loongarch64',
};

/** An apko `archs` entry (`amd64`, `arm/v7`, or already an apk name) as the apk name; undefined if unknown. */
export function apkArchOf(name: string): string | undefined {
  const lower = name.trim().toLowerCase().replace(/^linux\//, '');
  return FROM_OCI[lower] ?? (PLATFORMS[lower] ? lower : undefined);
}

export function platformOfApkArch(arch: string): Platform {
  const p = PLATFORMS[arch] ?? { architecture: arch };
  return { os: 'linux', architecture: p.architecture, ...(p.variant ? { variant: p.variant } : {}) };
}
