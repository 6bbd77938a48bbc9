import { RegistryError } from './errors.js';

/** Which generator a request is for, and the repository name as that generator sees it. */
export interface ServiceTarget {
  service: string;
  repository: string;
}

/** The service named by the Host header (`random.kontain.me` → `random`), if any. */
export function serviceFromHost(host: string | undefined, domain: string): string | undefined {
  if (!host || !domain) return undefined;
  const hostname = host.replace(/:\d+$/, '').toLowerCase().replace(/\.$/, '');
  if (!hostname.endsWith(`.${domain}`)) return undefined;
  const label = hostname.slice(0, -(domain.length + 1));
  return label.includes('.') ? label.slice(0, label.indexOf('.')) : label;
}

/**
 * Host form when the Host header names a service under the configured domain;
 * otherwise the first path segment of the repository is the service.
 */
export function resolveService(host: string | undefined, domain: string, name: string, known: ReadonlySet<string>): ServiceTarget {
  const fromHost = serviceFromHost(host, domain);
  let target: ServiceTarget;
  if (fromHost !== undefined) {
    target = { service: fromHost, repository: name };
  } else {
    const slash = name.indexOf('/');
    target = slash < 0 ? { service: name, repository: '' } : { service: name.slice(0, slash), repository: name.slice(slash + 1) };
  }
  if (!known.has(target.service)) {
    const list = [...known].sort().join(', ');
    const where = fromHost !== undefined ? `host ${host}` : `repository ${name}`;
    throw new RegistryError('NAME_UNKNOWN', `no service named ${JSON.stringify(target.service)} (from ${where}); services: ${list}`, {
      detail: { name },
    });
  }
  return target;
}
