/**
 * Turns a reference as skopeo writes it (`docker://…`, `oci:DIR[:TAG]`, `dir:PATH`) or a
 * kontain host image (`random/x:2x10`) into an ImageSource, with the registry client
 * set up the way the command line asked (credentials, plain-HTTP registries).
 */
import type { Logger } from 'pino';
import { parseReference, RegistryClient, type Reference } from '../remote/index.js';
import type { CredentialSource } from './credentials.js';
import type { ImageSource } from './image-source.js';
import { DirSource, OciLayoutSource } from './sources/layout.js';
import { KontainImageSource, type KontainHosts } from './sources/kontain.js';
import { RegistryImageSource } from './sources/registry.js';

export interface OpenOptions {
  credentials: CredentialSource;
  /** KONTAIN_INSECURE_REGISTRIES: reached over plain HTTP, private addresses allowed. */
  insecureRegistries: string[];
  /** `--tls-verify=false`: every registry named in a reference is treated as insecure too. */
  tlsVerify: boolean;
  hosts: KontainHosts;
  log: Logger;
}

export class ImageOpener {
  /** One client per set of insecure registries, so tokens are reused between images. */
  private readonly clients = new Map<string, RegistryClient>();

  constructor(private readonly options: OpenOptions) {}

  async open(reference: string): Promise<ImageSource> {
    if (reference.startsWith('docker://')) {
      const ref = parseReference(reference.slice('docker://'.length));
      return RegistryImageSource.open(this.client(ref), ref, reference);
    }
    if (reference.startsWith('oci:')) return OciLayoutSource.open(reference.slice('oci:'.length), reference);
    if (reference.startsWith('dir:')) return DirSource.open(reference.slice('dir:'.length), reference);
    const transport = /^([a-z][a-z0-9-]*):(?!\d)/.exec(reference);
    if (transport && !reference.includes('/')) throw new Error(`unsupported transport ${JSON.stringify(transport[1])} in ${JSON.stringify(reference)}: use docker://, oci:, dir: or a kontain host image`);
    return KontainImageSource.open(this.options.hosts, reference, this.options.log);
  }

  private client(ref: Reference): RegistryClient {
    const insecure = [...this.options.insecureRegistries, ...(this.options.tlsVerify ? [] : [ref.registry])];
    const key = insecure.join(',');
    let client = this.clients.get(key);
    if (!client) {
      client = new RegistryClient({ insecureRegistries: insecure, credentials: this.options.credentials, userAgent: 'kontain-proxy', logger: this.options.log });
      this.clients.set(key, client);
    }
    return client;
  }

  close(): void {
    for (const client of this.clients.values()) client.close();
  }
}
