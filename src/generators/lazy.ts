import type { Logger } from 'pino';
import type { Link } from '../content/links.js';
import type { Reference } from '../registry/names.js';
import type { BlobSource, Generator, Host, HostDescription, TagPage, TagRequest } from './generator.js';

/** A host as known at start: its name and description, and how to make its generator. */
export interface LazyHostOptions extends HostDescription {
  service: string;
  storeless?: boolean;
  /** Imports the host's module and constructs its generator; called once, on first use. */
  load(): Promise<Generator>;
}

/**
 * A host whose module is imported on its first request rather than at start (issue 12:
 * a cold instance answers its first pull sooner when it evaluates only what that pull
 * needs). Answers exactly as the generator it loads: a method the generator lacks gives
 * what the router does for a missing one.
 */
export class LazyHost implements Host {
  readonly service: string;
  readonly summary: string;
  readonly examples: string[];
  readonly pageURL?: string;
  readonly storeless?: boolean;
  private loading?: Promise<Generator>;
  /** The generator once loaded, for the synchronous manifestNow. */
  private loaded?: Generator;

  constructor(private readonly options: LazyHostOptions) {
    this.service = options.service;
    this.summary = options.summary;
    this.examples = options.examples;
    this.pageURL = options.pageURL;
    this.storeless = options.storeless;
  }

  /** The generator, loaded on the first call; a failed load is tried again on the next. */
  load(): Promise<Generator> {
    this.loading ??= this.options.load().then(
      (generator) => (this.loaded = generator),
      (err: unknown) => {
        this.loading = undefined;
        throw err;
      },
    );
    return this.loading;
  }

  async manifest(request: TagRequest) {
    return (await this.load()).manifest(request);
  }

  async fetchManifest(repository: string, digest: string, log: Logger) {
    return (await this.load()).fetchManifest?.(repository, digest, log);
  }

  /** Nothing before the module is loaded: the first request loads it through manifest or fetchManifest. */
  manifestNow(repository: string, reference: Reference) {
    return this.loaded?.manifestNow?.(repository, reference);
  }

  async fetchBlob(repository: string, digest: string, log: Logger, linked?: Link): Promise<BlobSource | undefined> {
    return (await this.load()).fetchBlob?.(repository, digest, log, linked);
  }

  async tags(repository: string, page: { n?: number; last?: string }, log: Logger): Promise<TagPage> {
    const generator = await this.load();
    return generator.tags ? generator.tags(repository, page, log) : { tags: [] };
  }

  async referrers(repository: string, digest: string, log: Logger) {
    return (await this.load()).referrers?.(repository, digest, log);
  }
}

/** The generator behind a host, loading it if it is lazy. */
export function loadedGenerator(host: Generator): Promise<Generator> {
  return host instanceof LazyHost ? host.load() : Promise.resolve(host);
}
