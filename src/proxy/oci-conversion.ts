/**
 * What skopeo's image proxy hands out is not the upstream's bytes but containers/image's
 * Go structs serialized again: the image config decoded into the OCI `Image` struct and
 * encoded with encoding/json, and a Docker schema 2 manifest converted to an OCI manifest
 * whose config descriptor points at that re-encoded config. A client of the proxy sees
 * those exact bytes (and the config digest inside the converted manifest), so they are
 * reproduced here field by field: struct field order, `omitempty`, sorted map keys, Go's
 * string escaping, case-insensitive field matching, and RFC 3339 times re-formatted.
 * The field order is that of image-spec v1.1 (the struct current skopeo builds with).
 */
import { sha256Digest } from '../oci/digest.js';
import { MediaType } from '../oci/mediatypes.js';
import type { Descriptor, ImageManifest } from '../oci/types.js';

export class ConversionError extends Error {}

type Json = unknown;

/** encoding/json's string form: like JSON.stringify, plus the HTML-safe escapes Go adds. */
export function goString(s: string): string {
  return JSON.stringify(s).replace(/[<>&\u2028\u2029]/g, (c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0'));
}

/** The value of a struct field as Go decodes it: keys match case-insensitively, the last one wins. */
function field(object: Record<string, Json>, name: string): Json {
  let value: Json;
  const lower = name.toLowerCase();
  for (const [key, v] of Object.entries(object)) if (key.toLowerCase() === lower) value = v;
  return value;
}

function asObject(value: Json, where: string): Record<string, Json> | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'object' || Array.isArray(value)) throw new ConversionError(`json: cannot unmarshal ${jsonType(value)} into ${where} (an object)`);
  return value as Record<string, Json>;
}

function jsonType(value: Json): string {
  return Array.isArray(value) ? 'array' : value === null ? 'null' : typeof value;
}

function asString(value: Json, where: string): string {
  if (value === undefined || value === null) return '';
  if (typeof value !== 'string') throw new ConversionError(`json: cannot unmarshal ${jsonType(value)} into ${where} of type string`);
  return value;
}

function asBool(value: Json, where: string): boolean {
  if (value === undefined || value === null) return false;
  if (typeof value !== 'boolean') throw new ConversionError(`json: cannot unmarshal ${jsonType(value)} into ${where} of type bool`);
  return value;
}

/** A []string: undefined for nil (JSON null or absent), else the list. */
function asStrings(value: Json, where: string): string[] | undefined {
  if (value === undefined || value === null) return undefined;
  if (!Array.isArray(value)) throw new ConversionError(`json: cannot unmarshal ${jsonType(value)} into ${where} of type []string`);
  return value.map((v, i) => asString(v, `${where}[${i}]`));
}

/** A map[string]struct{}: each value must be an object (or null); only keys survive. */
function asSet(value: Json, where: string): string[] | undefined {
  const object = asObject(value, where);
  if (!object) return undefined;
  for (const [key, v] of Object.entries(object)) asObject(v, `${where}[${key}]`);
  return Object.keys(object);
}

function asStringMap(value: Json, where: string): Record<string, string> | undefined {
  const object = asObject(value, where);
  if (!object) return undefined;
  return Object.fromEntries(Object.entries(object).map(([k, v]) => [k, asString(v, `${where}[${k}]`)]));
}

/** time.Time's MarshalJSON of what UnmarshalJSON read: RFC 3339, fraction without trailing zeros, zero offset as Z. */
function goTime(value: Json, where: string): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') throw new ConversionError(`json: cannot unmarshal ${jsonType(value)} into ${where} of type time.Time`);
  const m = /^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})$/.exec(value);
  if (!m) throw new ConversionError(`parsing time ${goString(value)} as RFC 3339 in ${where}`);
  const fraction = (m[3] ?? '').slice(0, 9).replace(/0+$/, '');
  const zone = m[4] === 'Z' || /^[+-]00:00$/.test(m[4]!) ? 'Z' : m[4];
  return `${m[1]}T${m[2]}${fraction ? '.' + fraction : ''}${zone}`;
}

/** An object literal from [key, already-encoded value] pairs, dropping omitted ones. */
function goObject(fields: Array<[string, string | undefined]>): string {
  return '{' + fields.filter((f): f is [string, string] => f[1] !== undefined).map(([k, v]) => `${goString(k)}:${v}`).join(',') + '}';
}

const omitEmptyString = (s: string) => (s === '' ? undefined : goString(s));
const omitEmptyList = (list: string[] | undefined) => (list && list.length > 0 ? `[${list.map(goString).join(',')}]` : undefined);
const sortedKeys = (keys: string[]) => [...keys].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));

function encodeRuntimeConfig(value: Json): string {
  const c = asObject(value, 'Image.config') ?? {};
  const set = asSet(field(c, 'ExposedPorts'), 'config.ExposedPorts');
  const volumes = asSet(field(c, 'Volumes'), 'config.Volumes');
  const labels = asStringMap(field(c, 'Labels'), 'config.Labels');
  const encodeSet = (keys: string[] | undefined) => (keys && keys.length > 0 ? '{' + sortedKeys(keys).map((k) => `${goString(k)}:{}`).join(',') + '}' : undefined);
  const labelKeys = labels ? sortedKeys(Object.keys(labels)) : [];
  return goObject([
    ['User', omitEmptyString(asString(field(c, 'User'), 'config.User'))],
    ['ExposedPorts', encodeSet(set)],
    ['Env', omitEmptyList(asStrings(field(c, 'Env'), 'config.Env'))],
    ['Entrypoint', omitEmptyList(asStrings(field(c, 'Entrypoint'), 'config.Entrypoint'))],
    ['Cmd', omitEmptyList(asStrings(field(c, 'Cmd'), 'config.Cmd'))],
    ['Volumes', encodeSet(volumes)],
    ['WorkingDir', omitEmptyString(asString(field(c, 'WorkingDir'), 'config.WorkingDir'))],
    ['Labels', labelKeys.length > 0 ? '{' + labelKeys.map((k) => `${goString(k)}:${goString(labels![k]!)}`).join(',') + '}' : undefined],
    ['StopSignal', omitEmptyString(asString(field(c, 'StopSignal'), 'config.StopSignal'))],
    ['ArgsEscaped', asBool(field(c, 'ArgsEscaped'), 'config.ArgsEscaped') ? 'true' : undefined],
  ]);
}

function encodeHistory(value: Json): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (!Array.isArray(value)) throw new ConversionError(`json: cannot unmarshal ${jsonType(value)} into Image.history`);
  if (value.length === 0) return undefined;
  const entries = value.map((entry, i) => {
    const h = asObject(entry, `history[${i}]`) ?? {};
    const created = goTime(field(h, 'created'), `history[${i}].created`);
    return goObject([
      ['created', created === undefined ? undefined : goString(created)],
      ['created_by', omitEmptyString(asString(field(h, 'created_by'), 'history.created_by'))],
      ['author', omitEmptyString(asString(field(h, 'author'), 'history.author'))],
      ['comment', omitEmptyString(asString(field(h, 'comment'), 'history.comment'))],
      ['empty_layer', asBool(field(h, 'empty_layer'), 'history.empty_layer') ? 'true' : undefined],
    ]);
  });
  return `[${entries.join(',')}]`;
}

/** An image config (OCI or Docker) as containers/image's OCIConfig() re-encodes it. */
export function goImageConfig(configBytes: Buffer): Buffer {
  let parsed: Json;
  try {
    parsed = JSON.parse(configBytes.toString('utf8'));
  } catch (err) {
    throw new ConversionError(`the image config is not JSON: ${(err as Error).message}`);
  }
  const image = asObject(parsed, 'Image');
  if (!image) throw new ConversionError('the image config is JSON null');
  const rootfs = asObject(field(image, 'rootfs'), 'Image.rootfs') ?? {};
  const diffIds = asStrings(field(rootfs, 'diff_ids'), 'rootfs.diff_ids');
  const created = goTime(field(image, 'created'), 'Image.created');
  const text = goObject([
    ['created', created === undefined ? undefined : goString(created)],
    ['author', omitEmptyString(asString(field(image, 'author'), 'Image.author'))],
    ['architecture', goString(asString(field(image, 'architecture'), 'Image.architecture'))],
    ['os', goString(asString(field(image, 'os'), 'Image.os'))],
    ['os.version', omitEmptyString(asString(field(image, 'os.version'), 'Image.os.version'))],
    ['os.features', omitEmptyList(asStrings(field(image, 'os.features'), 'Image.os.features'))],
    ['variant', omitEmptyString(asString(field(image, 'variant'), 'Image.variant'))],
    ['config', encodeRuntimeConfig(field(image, 'config'))],
    ['rootfs', goObject([
      ['type', goString(asString(field(rootfs, 'type'), 'rootfs.type'))],
      ['diff_ids', diffIds ? `[${diffIds.map(goString).join(',')}]` : 'null'],
    ])],
    ['history', encodeHistory(field(image, 'history'))],
  ]);
  return Buffer.from(text, 'utf8');
}

/** Only the runtime part (`config`), which skopeo's GetConfig returns. */
export function goRuntimeConfig(configBytes: Buffer): Buffer {
  const parsed = JSON.parse(goImageConfig(configBytes).toString('utf8')) as { config: Json };
  return Buffer.from(encodeRuntimeConfig(parsed.config), 'utf8');
}

/** Docker schema 2 layer types → their OCI names, as containers/image converts them. */
const OCI_LAYER_TYPE: Record<string, string> = {
  [MediaType.dockerLayerGzip]: MediaType.ociLayerGzip,
  [MediaType.dockerLayerTar]: MediaType.ociLayerTar,
  'application/vnd.docker.image.rootfs.foreign.diff.tar': 'application/vnd.oci.image.layer.nondistributable.v1.tar',
  'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip': 'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
};

function encodeDescriptor(d: Descriptor): string {
  return goObject([
    ['mediaType', goString(d.mediaType)],
    ['digest', goString(d.digest)],
    ['size', String(d.size)],
    ['urls', omitEmptyList(d.urls)],
  ]);
}

export interface ConvertedManifest {
  bytes: Buffer;
  /** The config the converted manifest's config descriptor points at. */
  config: Buffer;
}

/** A Docker schema 2 manifest as the OCI manifest containers/image makes of it. */
export function dockerToOciManifest(manifest: ImageManifest, configBytes: Buffer): ConvertedManifest {
  const config = goImageConfig(configBytes);
  const layers = (manifest.layers ?? []).map((layer) => {
    const mediaType = OCI_LAYER_TYPE[layer.mediaType];
    if (!mediaType) throw new ConversionError(`Unknown media type during manifest conversion: ${goString(layer.mediaType)}`);
    return encodeDescriptor({ mediaType, digest: layer.digest, size: layer.size, urls: layer.urls });
  });
  const text = goObject([
    ['schemaVersion', '2'],
    ['mediaType', goString(MediaType.ociManifest)],
    ['config', encodeDescriptor({ mediaType: MediaType.ociConfig, digest: sha256Digest(config), size: config.length })],
    ['layers', `[${layers.join(',')}]`],
  ]);
  return { bytes: Buffer.from(text, 'utf8'), config };
}
