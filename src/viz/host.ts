import type { Descriptor } from '../oci/types.js';
import { RegistryError } from '../registry/errors.js';
import type { Generator } from '../generators/generator.js';
import type { ResolveOptions } from './graph.js';
import type { GraphRenderer } from './render.js';
import type { ImageGraphSource } from './source.js';

export const VIZ_SERVICE = 'viz';

/** Where the viz page is: host form when there is a domain, else path form on this server. */
export function vizPageURL(domain: string): string {
  return domain ? `https://${VIZ_SERVICE}.${domain}/` : `/${VIZ_SERVICE}`;
}

/** Where the viz page is, for messages. */
export function vizPageLocation(domain: string): string {
  return domain ? vizPageURL(domain) : `/${VIZ_SERVICE} on this server`;
}

/** The answer to any registry request for viz: it is a web page, not a registry. */
export function notARegistry(domain: string): RegistryError {
  return new RegistryError('NAME_UNKNOWN', `viz is a web page, not a registry: nothing can be pulled from it; open ${vizPageLocation(domain)} to draw the layers of images`, {
    status: 404,
  });
}

/**
 * The viz host. It is in the generator map so the landing page lists it and the registry
 * knows the name, but it makes no images: its page and API are served by vizRouter, which
 * takes the image source and renderer from here, and every registry request for it is refused.
 */
export class VizHost implements Generator {
  readonly service = VIZ_SERVICE;

  constructor(
    readonly source: ImageGraphSource,
    readonly renderer: GraphRenderer,
    private readonly domain: string,
    readonly resolveOptions: ResolveOptions = {},
  ) {}

  async manifest(): Promise<Descriptor> {
    throw notARegistry(this.domain);
  }
}
