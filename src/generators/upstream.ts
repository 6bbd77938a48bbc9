import { RegistryError } from '../registry/errors.js';
import { InvalidReferenceError, parseReference, type Reference } from '../remote/reference.js';
import { UpstreamError } from '../remote/errors.js';

/**
 * The upstream image a request names, for the hosts that start from another registry's
 * image (mirror, flatten, estargz).
 *
 * `busybox` → docker.io/library/busybox; `ghcr.io/o/r` → ghcr.io. A repository path cannot
 * carry `:`, so a registry port is written with a dash after the host:
 * `mirror/localhost-5000/foo` → localhost:5000/foo (a host's last label never ends in
 * `-<digits>`, so this cannot be mistaken for a real name). Repeated `<service>.<domain>/`
 * prefixes (`mirror.kontain.me/mirror.kontain.me/busybox`) are dropped, as kontain.me does.
 */
export function upstreamReference(service: string, domain: string, repository: string, reference: { tag?: string; digest?: string }): Reference {
  let path = repository;
  const selfPrefix = domain ? `${service}.${domain}/` : undefined;
  while (selfPrefix && path.startsWith(selfPrefix)) path = path.slice(selfPrefix.length);
  if (!path) {
    throw new RegistryError('NAME_INVALID', `name an upstream image after ${service}/, e.g. ${service}/busybox or ${service}/ghcr.io/owner/repo`);
  }
  const [first, ...rest] = path.split('/');
  path = [hostWithPort(first!), ...rest].join('/');
  const text = reference.digest ? `${path}@${reference.digest}` : `${path}:${reference.tag ?? 'latest'}`;
  try {
    return parseReference(text);
  } catch (err) {
    if (err instanceof InvalidReferenceError) throw new RegistryError('NAME_INVALID', err.message);
    throw err;
  }
}

/**
 * A host name written `host-port` in a repository path (`127.0.0.1-5000`, `localhost-8443`)
 * as `host:port`; anything else unchanged. Only a name with a dot, or `localhost`, can be a
 * host, and no real host's last label ends in `-<digits>`.
 */
export function hostWithPort(element: string): string {
  const withPort = /^((?:[a-z0-9-]+\.)*[a-z0-9-]+|localhost)-(\d{1,5})$/.exec(element);
  return withPort && (withPort[1]!.includes('.') || withPort[1] === 'localhost') ? `${withPort[1]}:${withPort[2]}` : element;
}

/** The registry error a client should see for an upstream failure; it names the upstream. */
export function upstreamFailure(err: unknown, kind: 'manifest' | 'blob' = 'manifest'): RegistryError | undefined {
  if (!(err instanceof UpstreamError)) return undefined;
  if (err.code === 'ADDRESS_REFUSED') return new RegistryError('DENIED', err.message);
  switch (err.status) {
    case 404:
      return new RegistryError(kind === 'blob' ? 'BLOB_UNKNOWN' : 'MANIFEST_UNKNOWN', err.message);
    case 401:
    case 403:
      return new RegistryError('DENIED', err.message);
    case 429:
      return new RegistryError('TOOMANYREQUESTS', err.message);
  }
  if (err.code === 'DIGEST_INVALID' || err.code === 'SIZE_INVALID' || err.code === 'MANIFEST_INVALID') {
    return new RegistryError('UNAVAILABLE', `${err.message} (nothing was stored)`, { status: 502 });
  }
  if (err.status === 0 && /cannot resolve|has no addresses/.test(err.message)) {
    return new RegistryError('NAME_UNKNOWN', err.message);
  }
  return new RegistryError('UNAVAILABLE', err.message, { status: err.status >= 500 || err.status === 0 ? 502 : 503 });
}

/** Whether an error means "the upstream is down or broken", when a cached answer may stand in. */
export function isUpstreamOutage(err: unknown): boolean {
  return err instanceof UpstreamError && err.code !== 'ADDRESS_REFUSED' && (err.status === 0 || err.status >= 500 || err.status === 429);
}
