import { isIP } from 'node:net';
import type { Logger } from 'pino';
import type { ContentStore } from '../content/store.js';
import type { Generator } from '../generators/generator.js';
import type { Descriptor, StoredManifest } from '../oci/types.js';
import { AcceptedTypes } from '../registry/accept.js';
import { RegistryError } from '../registry/errors.js';
import { resolveService, type ServiceTarget } from '../registry/services.js';
import { formatReference, type Reference } from '../remote/reference.js';
import { VIZ_SERVICE } from './host.js';
import type { ManifestReader } from './source.js';

/**
 * This server's own images, read in-process the way the registry core serves a pull: a
 * tag through its host's generator, a digest from the ContentStore (or the generator when
 * it fetches on demand). So `localhost:8080/random/x:2x100` draws on one machine without
 * allowlisting the server as an insecure upstream, and never goes out over the network.
 */
export class OwnImages implements ManifestReader {
  private readonly services: ReadonlySet<string>;

  constructor(
    private readonly generators: ReadonlyMap<string, Generator>,
    private readonly store: ContentStore,
    private readonly domain: string,
    private readonly log: Logger,
    /** The viz client's: a generator making an image for the graph stops when it leaves. */
    private readonly signal?: AbortSignal,
  ) {
    this.services = new Set(generators.keys());
  }

  async resolve(ref: Reference): Promise<Descriptor> {
    if (ref.tag === undefined) throw new Error(`${formatReference(ref)} has neither tag nor digest`);
    const { generator, target } = this.target(ref);
    const answer = await generator.manifest({ repository: target.repository, tag: ref.tag, accept: AcceptedTypes.all(), log: this.log, signal: this.signal });
    if ('bytes' in answer) return { mediaType: answer.mediaType, digest: answer.digest, size: answer.bytes.length };
    // As the router does for a pull by tag: what the image references becomes servable
    // under its repository, which getManifest then checks.
    const stored = await this.store.getManifest(answer.digest);
    if (stored && !generator.storeless) await this.store.links.addManifest(generator.service, target.repository, stored);
    return answer;
  }

  async getManifest(ref: Reference): Promise<StoredManifest> {
    const digest = ref.digest!;
    const { generator, target } = this.target(ref);
    // Only what the repository's images reference, as the registry core serves by digest.
    const linked = !generator.storeless && (await this.store.links.find(generator.service, target.repository, digest));
    const manifest = (linked && (await this.store.getManifest(digest))) || (await generator.fetchManifest?.(target.repository, digest, this.log));
    if (!manifest) throw new Error(`manifest ${digest} is not known to ${generator.service} on this server`);
    return manifest;
  }

  /** Which host of this server a reference names, as a pull of it would be routed. */
  private target(ref: Reference): { generator: Generator; target: ServiceTarget } {
    let target: ServiceTarget;
    try {
      target = resolveService(ref.registry, this.domain, ref.repository, this.services);
    } catch (err) {
      throw new Error(err instanceof RegistryError ? `${formatReference(ref)}: ${err.message}` : String(err));
    }
    if (target.service === VIZ_SERVICE) throw new Error(`${formatReference(ref)}: viz is a web page, not a registry; name an image of another host of this server`);
    return { generator: this.generators.get(target.service)!, target };
  }
}

/** How a request reached this server: the Host it named and the local port it came in on. */
export interface ArrivedAs {
  host?: string;
  localPort?: number;
}

const LOOPBACK_NAMES = ['localhost', '127.0.0.1', '[::1]'];

/**
 * Whether a registry (`host[:port]` of a reference) is this server: the host the page was
 * reached by, a loopback name with the port the request came in on, or, with a domain,
 * the bare domain and its host-form names (`random.<domain>`).
 */
export function ownRegistryNames(arrived: ArrivedAs, domain: string): (registry: string) => boolean {
  const names = new Set<string>();
  const host = arrived.host?.toLowerCase().replace(/\.$/, '');
  if (host) names.add(host);
  if (arrived.localPort) for (const name of LOOPBACK_NAMES) names.add(`${name}:${arrived.localPort}`);
  return (registry) => {
    const name = registry.toLowerCase();
    if (names.has(name)) return true;
    if (!domain) return false;
    const hostname = name.replace(/:\d+$/, '').replace(/\.$/, '');
    return !isIP(hostname) && (hostname === domain || hostname.endsWith(`.${domain}`));
  };
}
