/**
 * What kontain reads of a Cloud Native Buildpacks builder image before it builds with it,
 * all from the image's config through kontain's own registry client (address policy,
 * credentials): the platform manifest to pin, the lifecycle's supported Platform APIs and
 * the run image (label `io.buildpacks.builder.metadata`), and the build user
 * (`CNB_USER_ID`, `CNB_GROUP_ID` in its env). Builders are multi-platform indexes; the
 * image for this machine's architecture is used (Cloud Build's workers are amd64).
 */
import type { ImageConfig, ImageIndex, ImageManifest, Platform } from '../oci/types.js';
import { isIndexType } from '../oci/mediatypes.js';
import { selectPlatform } from '../registry/platform.js';
import type { RegistryClient } from '../remote/client.js';
import { DOCKER_HUB, formatReference, parseReference, type Reference } from '../remote/reference.js';

/** Platform APIs kontain speaks to a lifecycle: exporting to an OCI layout needs 0.12; 0.15 is the newest it was written against. */
export const PLATFORM_APIS = ['0.15', '0.14', '0.13', '0.12'] as const;

export interface BuilderImage {
  /** The builder pinned to this platform's manifest (`registry/repo@sha256:…`). */
  pinned: string;
  digest: string;
  /** The run image as the builder's metadata names it. */
  runImage: string;
  platformApi: string;
  uid: number;
  gid: number;
  /** The lifecycle's version, for logs. */
  lifecycleVersion: string;
}

/** A builder that kontain cannot build with: the operator's to fix (KONTAIN_BUILDPACK_BUILDER). */
export class BuilderUnusable extends Error {
  override name = 'BuilderUnusable';
}

interface BuilderMetadata {
  images?: Array<{ image?: string }>;
  stack?: { runImage?: { image?: string } };
  lifecycle?: { version?: string; api?: { platform?: string }; apis?: { platform?: { supported?: string[]; deprecated?: string[] } } };
}

export function hostPlatform(): Platform {
  return { os: 'linux', architecture: process.arch === 'arm64' ? 'arm64' : 'amd64' };
}

/** An image's manifest for this platform (the image itself when it is not an index), pinned. */
export async function platformImage(client: RegistryClient, reference: string): Promise<{ ref: Reference; manifest: ImageManifest; digest: string; bytes: Buffer; mediaType: string }> {
  const ref = parseReference(reference);
  let fetched = await client.getManifest(ref);
  if (isIndexType(fetched.mediaType)) {
    const index = JSON.parse(fetched.bytes.toString('utf8')) as ImageIndex;
    const platform = hostPlatform();
    const child = selectPlatform(index.manifests ?? [], platform);
    if (!child) throw new BuilderUnusable(`${reference} has no image for ${platform.os}/${platform.architecture}`);
    fetched = await client.getManifest({ ...ref, tag: undefined, digest: child.digest });
  }
  const pinned = { ...ref, tag: undefined, digest: fetched.digest };
  return { ref: pinned, manifest: JSON.parse(fetched.bytes.toString('utf8')) as ImageManifest, digest: fetched.digest, bytes: fetched.bytes, mediaType: fetched.mediaType };
}

export async function inspectBuilder(client: RegistryClient, reference: string): Promise<BuilderImage> {
  const { ref, manifest, digest } = await platformImage(client, reference);
  const config = JSON.parse((await client.blobBytes(ref, manifest.config)).toString('utf8')) as ImageConfig;
  const label = config.config?.Labels?.['io.buildpacks.builder.metadata'];
  if (!label) throw new BuilderUnusable(`${reference} is not a buildpacks builder: its config has no io.buildpacks.builder.metadata label`);
  let metadata: BuilderMetadata;
  try {
    metadata = JSON.parse(label) as BuilderMetadata;
  } catch {
    throw new BuilderUnusable(`${reference}: its io.buildpacks.builder.metadata label is not JSON`);
  }
  const runImage = metadata.images?.find((image) => image.image)?.image ?? metadata.stack?.runImage?.image;
  if (!runImage) throw new BuilderUnusable(`${reference}: its builder metadata names no run image`);
  const lifecycle = metadata.lifecycle ?? {};
  const supported = new Set([...(lifecycle.apis?.platform?.supported ?? []), ...(lifecycle.apis?.platform?.deprecated ?? []), ...(lifecycle.api?.platform ? [lifecycle.api.platform] : [])]);
  const platformApi = PLATFORM_APIS.find((api) => supported.has(api));
  if (!platformApi) {
    throw new BuilderUnusable(`${reference}: its lifecycle supports Platform APIs ${[...supported].join(', ') || 'none named'}; kontain needs one of ${PLATFORM_APIS.join(', ')} (export to an OCI layout)`);
  }
  const env = new Map((config.config?.Env ?? []).map((entry) => [entry.slice(0, entry.indexOf('=')), entry.slice(entry.indexOf('=') + 1)]));
  const uid = Number(env.get('CNB_USER_ID'));
  const gid = Number(env.get('CNB_GROUP_ID'));
  if (!Number.isInteger(uid) || !Number.isInteger(gid) || env.get('CNB_USER_ID') === undefined || env.get('CNB_GROUP_ID') === undefined) {
    throw new BuilderUnusable(`${reference}: its config sets no numeric CNB_USER_ID and CNB_GROUP_ID (the build user)`);
  }
  return { pinned: formatReference(ref), digest, runImage, platformApi, uid, gid, lifecycleVersion: lifecycle.version ?? 'unknown' };
}

/**
 * A digest reference as the lifecycle names it (go-containerregistry's form: Docker Hub is
 * `index.docker.io`), and the path the platform spec maps it to in a layout directory:
 * `<registry>/<repository>/<algorithm>/<hex>`.
 */
export function layoutReference(ref: Reference): { name: string; path: string } {
  if (!ref.digest) throw new Error(`${formatReference(ref)} is not pinned by digest`);
  const registry = ref.registry === DOCKER_HUB ? 'index.docker.io' : ref.registry;
  const [algorithm, hex] = ref.digest.split(':') as [string, string];
  return { name: `${registry}/${ref.repository}@${ref.digest}`, path: [registry, ...ref.repository.split('/'), algorithm, hex].join('/') };
}
