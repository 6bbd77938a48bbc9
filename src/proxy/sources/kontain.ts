/**
 * Images of kontain's own hosts (`random/x:2x10`, `flatten/busybox`), made in this process
 * with the configured store, as the server would make them for a pull; no server runs.
 */
import type { Logger } from 'pino';
import type { Config } from '../../config.js';
import type { ContentStore } from '../../content/store.js';
import type { Generator } from '../../generators/generator.js';
import type { StoredManifest } from '../../oci/types.js';
import { AcceptedTypes } from '../../registry/accept.js';
import { RegistryError } from '../../registry/errors.js';
import { MANIFEST_TYPES } from '../../remote/index.js';
import { ImageNotFound, verified, type ImageSource, type SourceBlob } from '../image-source.js';

/** The store and hosts, made once per process on the first kontain reference. */
export class KontainHosts {
  private hosts?: Promise<{ store: ContentStore; generators: Map<string, Generator> }>;

  constructor(
    private readonly config: Config,
    private readonly log: Logger,
  ) {}

  get(): Promise<{ store: ContentStore; generators: Map<string, Generator> }> {
    // Loaded on first use: every host's modules are slow to load, and most references are not kontain's.
    this.hosts ??= (async () => {
      const [{ ContentStore }, { createGenerators }, { createBackend }] = await Promise.all([
        import('../../content/store.js'),
        import('../../generators/index.js'),
        import('../../storage/index.js'),
      ]);
      const store = new ContentStore(await createBackend(this.config), { pointerTTLms: this.config.ttlSeconds * 1000 });
      return { store, generators: createGenerators({ store, config: this.config, log: this.log }) };
    })();
    return this.hosts;
  }
}

/** `service/repository[:tag|@digest]`, the tag `latest` when neither is given. */
export function parseKontainReference(spec: string): { service: string; repository: string; tag?: string; digest?: string } | undefined {
  const at = spec.indexOf('@');
  let rest = at >= 0 ? spec.slice(0, at) : spec;
  const digest = at >= 0 ? spec.slice(at + 1) : undefined;
  let tag: string | undefined;
  const colon = rest.lastIndexOf(':');
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
  }
  const slash = rest.indexOf('/');
  if (slash <= 0 || slash === rest.length - 1) return undefined;
  return { service: rest.slice(0, slash), repository: rest.slice(slash + 1), ...(digest ? { digest } : { tag: tag ?? 'latest' }) };
}

/** A manifest the host has stored, or can fetch (mirror). */
async function hostManifest(store: ContentStore, generator: Generator, repository: string, digest: string, log: Logger): Promise<StoredManifest> {
  const found = (await store.getManifest(digest)) ?? (await generator.fetchManifest?.(repository, digest, log));
  if (!found) throw new RegistryError('MANIFEST_UNKNOWN', `${generator.service}/${repository} has no manifest ${digest}`);
  return found;
}

export class KontainImageSource implements ImageSource {
  private constructor(
    readonly name: string,
    readonly top: StoredManifest,
    private readonly store: ContentStore,
    private readonly generator: Generator,
    private readonly repository: string,
    private readonly log: Logger,
  ) {}

  static async open(hosts: KontainHosts, spec: string, log: Logger): Promise<KontainImageSource> {
    const ref = parseKontainReference(spec);
    const { store, generators } = await hosts.get();
    const generator = ref && generators.get(ref.service);
    if (!ref || !generator) {
      throw new Error(`${JSON.stringify(spec)} is neither TRANSPORT:REFERENCE (docker://, oci:, dir:) nor HOST/NAME:TAG of a kontain host (${[...generators.keys()].join(', ')})`);
    }
    try {
      const digest = ref.digest ?? (await generator.manifest({ repository: ref.repository, tag: ref.tag!, accept: AcceptedTypes.fromHeaders(MANIFEST_TYPES.join(', ')), log })).digest;
      return new KontainImageSource(spec, await hostManifest(store, generator, ref.repository, digest, log), store, generator, ref.repository, log);
    } catch (err) {
      if (err instanceof RegistryError && (err.code === 'MANIFEST_UNKNOWN' || err.code === 'NAME_UNKNOWN')) throw new ImageNotFound(`${spec}: ${err.message}`);
      throw err;
    }
  }

  manifest(digest: string): Promise<StoredManifest> {
    return hostManifest(this.store, this.generator, this.repository, digest, this.log);
  }

  async blob(digest: string, size?: number): Promise<SourceBlob> {
    const stored = await this.store.statBlob(digest);
    if (stored) return { stream: verified(this.name, await this.store.readBlob(digest), digest, size ?? stored.size), size: stored.size };
    // The manifest's size, when known, is the most a fetch may take.
    const fetched = await this.generator.fetchBlob?.(this.repository, digest, this.log, size === undefined ? undefined : { digest, size });
    if (!fetched) throw new RegistryError('BLOB_UNKNOWN', `${this.name} has no blob ${digest}`);
    return { stream: verified(this.name, await fetched.open(), digest, size ?? fetched.size), size: fetched.size };
  }

  async close(): Promise<void> {}
}
