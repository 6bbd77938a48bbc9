/**
 * Image references as docker writes them (`busybox`, `ghcr.io/o/r:v1`,
 * `localhost:5000/x@sha256:…`), normalised the way distribution/reference's
 * ParseNormalizedNamed does, so `mirror/busybox` means what `docker pull busybox` means.
 */

export interface Reference {
  /** Registry host as written, with port if any; Docker Hub is `docker.io`. */
  registry: string;
  /** Repository path within the registry, e.g. `library/busybox`. */
  repository: string;
  tag?: string;
  /** `sha256:<64 hex>`; when both are given the digest is what gets pulled. */
  digest?: string;
}

/** A reference string that cannot be parsed; the message says which part is wrong. */
export class InvalidReferenceError extends Error {
  override name = 'InvalidReferenceError';
  constructor(
    readonly reference: string,
    reason: string,
  ) {
    super(`invalid image reference ${JSON.stringify(reference)}: ${reason}`);
  }
}

export const DOCKER_HUB = 'docker.io';
/** Where Docker Hub's registry API actually answers (as containerd maps it). */
export const DOCKER_HUB_HOST = 'registry-1.docker.io';
const DEFAULT_TAG = 'latest';
const MAX_NAME_LENGTH = 255;

const PATH_COMPONENT = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$/;
const DOMAIN_NAME = /^(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*$/;
const IPV6_LITERAL = /^\[[a-fA-F0-9:]+\]$/;
const PORT = /^[0-9]+$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const SHA256 = /^sha256:[a-f0-9]{64}$/;
const ANY_DIGEST = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;

export function parseReference(input: string): Reference {
  const fail = (reason: string): never => {
    throw new InvalidReferenceError(input, reason);
  };
  if (input === '') fail('it is empty');

  let rest = input;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    checkDigest(digest, fail);
  }

  // A tag follows the last `:` that comes after the last `/` (a `:` before it is a port).
  let tag: string | undefined;
  const colon = rest.lastIndexOf(':');
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) {
      fail(`tag ${JSON.stringify(tag)} is not valid: 1-128 characters of letters, digits, _ . - not starting with . or -`);
    }
  }

  const { registry, repository } = splitRegistry(rest, fail);
  if (!tag && !digest) tag = DEFAULT_TAG;
  return { registry, repository, ...(tag ? { tag } : {}), ...(digest ? { digest } : {}) };
}

/** The canonical string form: `docker.io/library/busybox:latest`, `host/repo@sha256:…`. */
export function formatReference(ref: Reference): string {
  return `${ref.registry}/${ref.repository}${ref.tag ? `:${ref.tag}` : ''}${ref.digest ? `@${ref.digest}` : ''}`;
}

/** The host:port to connect to for a registry name (Docker Hub's API is not at docker.io). */
export function registryEndpointHost(registry: string): string {
  return registry === DOCKER_HUB ? DOCKER_HUB_HOST : registry;
}

/** Whether a repository path (`library/busybox`) follows the distribution grammar. */
export function isRepositoryName(repository: string): boolean {
  return repository.length > 0 && repository.length <= MAX_NAME_LENGTH && repository.split('/').every((c) => PATH_COMPONENT.test(c));
}

function splitRegistry(name: string, fail: (reason: string) => never): { registry: string; repository: string } {
  if (name === '') fail('the repository name is missing');
  const slash = name.indexOf('/');
  const first = slash < 0 ? name : name.slice(0, slash);
  // Docker's rule: the first component is a registry host only if it looks like one.
  const isHost = slash >= 0 && (/[.:]/.test(first) || first === 'localhost' || first.toLowerCase() !== first);
  let registry = DOCKER_HUB;
  let repository = name;
  if (isHost) {
    registry = first;
    repository = name.slice(slash + 1);
    checkHost(registry, fail);
  }
  if (registry === 'index.docker.io') registry = DOCKER_HUB;
  if (registry === DOCKER_HUB && !repository.includes('/')) repository = `library/${repository}`;

  if (repository === '') fail('the repository name is missing');
  if (repository !== repository.toLowerCase()) fail('the repository name must be lowercase');
  for (const component of repository.split('/')) {
    if (!PATH_COMPONENT.test(component)) {
      fail(
        `repository path component ${JSON.stringify(component)} is not valid: use lowercase letters and digits separated by . _ __ or -`,
      );
    }
  }
  if (registry.length + 1 + repository.length > MAX_NAME_LENGTH) fail(`the name is longer than ${MAX_NAME_LENGTH} characters`);
  if (registry === DOCKER_HUB && /^library\/[a-f0-9]{64}$/.test(repository) && !isHost) {
    fail('a 64-character hexadecimal string is not a repository name (did you mean @sha256:…?)');
  }
  return { registry, repository };
}

function checkHost(host: string, fail: (reason: string) => never): void {
  let hostname = host;
  let port: string | undefined;
  const portColon = host.startsWith('[') ? host.indexOf(']:') + 1 : host.lastIndexOf(':');
  if (portColon > 0) {
    hostname = host.slice(0, portColon);
    port = host.slice(portColon + 1);
  }
  if (port !== undefined && (!PORT.test(port) || Number(port) < 1 || Number(port) > 65535)) {
    fail(`registry port ${JSON.stringify(port)} is not a number from 1 to 65535`);
  }
  if (!DOMAIN_NAME.test(hostname) && !IPV6_LITERAL.test(hostname)) {
    fail(`registry host ${JSON.stringify(hostname)} is not a valid host name`);
  }
}

function checkDigest(digest: string, fail: (reason: string) => never): void {
  if (SHA256.test(digest)) return;
  if (ANY_DIGEST.test(digest) && !digest.startsWith('sha256:')) {
    fail(`digest algorithm of ${JSON.stringify(digest)} is not supported: only sha256 digests are`);
  }
  fail(`digest ${JSON.stringify(digest)} is not valid: expected sha256: followed by 64 lowercase hex digits`);
}
