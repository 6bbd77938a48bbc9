/**
 * The part of a module's `.ko.yaml` that chooses the base image (ko's docs,
 * "Configuration"): `baseImageOverrides` by import path, then `defaultBaseImage`. The
 * build settings (`builds`, flags, ldflags) are not honoured: they would let a module
 * pass arbitrary flags to the compiler on the server.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { parse } from 'yaml';

export interface KoYaml {
  defaultBaseImage?: string;
  baseImageOverrides: Record<string, string>;
}

export class KoYamlInvalid extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'KoYamlInvalid';
  }
}

/** The module root's `.ko.yaml`, or an empty configuration when there is none. */
export async function readKoYaml(moduleDir: string): Promise<KoYaml> {
  let text: string;
  try {
    text = await readFile(path.join(moduleDir, '.ko.yaml'), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { baseImageOverrides: {} };
    throw err;
  }
  return parseKoYaml(text);
}

export function parseKoYaml(text: string): KoYaml {
  let doc: unknown;
  try {
    doc = parse(text);
  } catch (err) {
    throw new KoYamlInvalid(`.ko.yaml is not YAML: ${(err as Error).message}`);
  }
  if (doc === null || doc === undefined) return { baseImageOverrides: {} };
  if (typeof doc !== 'object' || Array.isArray(doc)) throw new KoYamlInvalid('.ko.yaml is not a mapping');
  const { defaultBaseImage, baseImageOverrides } = doc as Record<string, unknown>;
  if (defaultBaseImage !== undefined && typeof defaultBaseImage !== 'string') throw new KoYamlInvalid('.ko.yaml defaultBaseImage is not a string');
  const overrides: Record<string, string> = {};
  if (baseImageOverrides !== undefined) {
    if (typeof baseImageOverrides !== 'object' || baseImageOverrides === null || Array.isArray(baseImageOverrides)) {
      throw new KoYamlInvalid('.ko.yaml baseImageOverrides is not a mapping');
    }
    for (const [importPath, image] of Object.entries(baseImageOverrides)) {
      if (typeof image !== 'string') throw new KoYamlInvalid(`.ko.yaml baseImageOverrides.${importPath} is not a string`);
      overrides[importPath] = image;
    }
  }
  return { ...(defaultBaseImage ? { defaultBaseImage } : {}), baseImageOverrides: overrides };
}

/** The base image for one import path: its override, the module's default, else the server's. */
export function baseImageFor(koYaml: KoYaml, importPath: string, serverDefault: string): string {
  return koYaml.baseImageOverrides[importPath] ?? koYaml.defaultBaseImage ?? serverDefault;
}
