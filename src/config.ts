import { tmpdir } from 'node:os';
import { isIP } from 'node:net';
import path from 'node:path';

/**
 * The one place that reads the environment. Every variable is documented in the
 * README's configuration table; keep the two in step.
 */
export type StoreConfig =
  | { kind: 'fs'; directory: string }
  | { kind: 'gcs'; bucket: string; prefix: string };

export type UrlMode = 'public' | 'signed' | 'none';

/** Where delayed work runs: in-process (persisted in the store) or on Cloud Tasks. */
export type TasksConfig =
  | { kind: 'embedded' }
  | {
      kind: 'cloud';
      /** `projects/P/locations/L/queues/Q` */
      queue: string;
      /** The service's own base URL, which Cloud Tasks calls at `/_tasks/<name>`. */
      serviceUrl: string;
      /** Service account Cloud Tasks signs OIDC tokens as; the only identity the endpoint accepts. */
      serviceAccount?: string;
      /** The OIDC token audience (default: serviceUrl). */
      audience: string;
      /** A shared secret sent as X-Kontain-Task-Secret and accepted instead of a token. */
      secret?: string;
      /** A Cloud Tasks API endpoint other than Google's, called without credentials (local tests). */
      endpoint?: string;
    };

export interface Config {
  port: number;
  /** Seconds a connection may take to send a request's headers (idle and header-less connections are closed after it). */
  headersTimeoutSeconds: number;
  /** Open connections per client address (TCP peer); 0 = no cap. Off by default on Cloud Run, where every peer is the proxy. */
  maxConnectionsPerClient: number;
  /** Suffix for host routing (`kontain.me`); empty means path routing only. */
  domain: string;
  store: StoreConfig;
  /** How blob GETs reach GCS: redirect to the public URL, to a V4 signed URL, or stream through the app. */
  gcsUrlMode: UrlMode;
  gcsSignedUrlExpirySeconds: number;
  /** A GCS JSON API endpoint other than Google's (local test endpoints). */
  gcsEndpoint?: string;
  logLevel: string;
  /** Bytes of manifests held in memory. */
  manifestCacheBytes: number;
  /** Lifetime of cache pointers, in seconds. */
  ttlSeconds: number;
  /** A build lease not renewed for this long is taken over by another instance. */
  leaseTTLSeconds: number;
  /** Garbage collection keeps unreachable blobs and manifests younger than this, in seconds. */
  gcGraceSeconds: number;
  /** Seconds between garbage collection runs inside `serve`; 0 disables them. */
  gcIntervalSeconds: number;
  /** Google Cloud project, used to form Cloud Logging trace names. */
  project?: string;
  /** Upstream registries (`host[:port]`) that may be on private or loopback addresses, reached over plain HTTP. */
  insecureRegistries: string[];
  /** A docker config.json with credentials for upstream registries. */
  dockerConfigPath?: string;
  /** mirror: serve a previously resolved tag from the cache when the upstream fails. */
  mirrorStaleIfError: boolean;
  /** mirror: seconds a tag's upstream resolution is reused before asking the upstream again; 0 asks on every request. */
  mirrorTagTTLSeconds: number;
  /** Upstream registries: longest wait for response headers, and longest pause in a body, in ms. */
  upstreamStallMs: number;
  /** Upstream registries: the slowest body accepted, in bytes/s averaged over upstreamRateWindowMs (0: any). */
  upstreamMinRate: number;
  /** Upstream registries: the window the minimum rate is judged over, in ms. */
  upstreamRateWindowMs: number;
  /** Delayed work backend (wait host). */
  tasks: TasksConfig;
  /** flatten/estargz: uncompressed tar bytes one derived image may read from its upstream layers. */
  derivedMaxBytes: number;
  /** flatten/estargz: tar entries one derived image may read from its upstream layers (memory grows with them). */
  derivedMaxEntries: number;
  /** random: bytes of random layers being generated at once, all requests together. */
  randomMaxBytesAtOnce: number;
  /** ko: Go module proxies, tried in order (`https://…` or `file:///…`); operator-trusted. */
  goproxy: string[];
  /** ko: base image when the module's .ko.yaml names none; operator-trusted. */
  koBaseImage: string;
  /** ko: wall-clock limit of one `go build`, in seconds. */
  koBuildTimeoutSeconds: number;
  /** ko: builds running at once in this process; further requests wait. */
  koMaxBuilds: number;
  /** ko: largest module zip accepted, compressed and uncompressed, in bytes. */
  koMaxModuleBytes: number;
  /** ko: where Go's build and module caches and the build directories live. */
  koCacheDir: string;
  /** ko: the go command (a name looked up on PATH, or a path). */
  goCommand: string;
  /** apko: the APK repository (`https://…/os` or `file:///…`) used for `apko/<pkg>/...`; operator-trusted. */
  apkRepository: string;
  /** apko: public keys (URLs or file paths) that sign that repository's index and packages. */
  apkKeyring: string[];
  /** apko: architectures (apk names: x86_64, aarch64, …) built for `apko/<pkg>/...`; several make an index. */
  apkArchs: string[];
  /** Builds from source (kaniko host; the buildpack and nix hosts to come). */
  /** nix: the package set of `nix/<pkg>/...`: `git+<url>[?ref=<branch>]` (pinned by the tag) or a Nix expression (e.g. `import <nixpkgs> {}`); empty turns packages off. */
  nixPackages: string;
  /** nix: the flake (path or git URL) whose outputs `nix/flake--<attr>` serves; empty turns flakes off. */
  nixFlake: string;
  /** nix: wall-clock limit of one Nix evaluation or build, in seconds. */
  nixBuildTimeoutSeconds: number;
  /** nix: Nix builds running at once in this process; further requests wait. */
  nixMaxBuilds: number;
  /** nix: most layers in a nix image (the store paths' layers plus the /bin links layer). */
  nixMaxLayers: number;
  builds: BuildsConfig;
  /** static: the directory of images served by the static host; unset leaves the host out. */
  staticRoot?: string;
  /** static: a name prepended to every static name (`team` serves `app` as `static/team/app`); empty for none. */
  staticPrefix: string;
  /** viz: wall-clock limit of laying out one graph, in seconds. */
  vizRenderTimeoutSeconds: number;
  /** viz: graphs laid out at once (a worker thread each); further requests wait. */
  vizMaxRenders: number;
}

/** Where builds run and the bounds on each. */
export interface BuildsConfig {
  /** `buildah` on this machine, or Cloud Build. */
  executor: 'buildah' | 'cloudbuild';
  /** Git repositories are `<gitBase>/<owner>/<repo>`; operator-trusted, but its address obeys the mirror's policy. */
  gitBase: string;
  /** Seconds a ref listing may take in all (a git server that trickles is an error); a fetch may take ten times this. */
  gitTimeoutSeconds: number;
  /** `owner/repo` patterns (`*` matches within one part) that may be built; empty refuses every repository. */
  allow: string[];
  /** How long a manifest request waits for a build before answering "building, pull again", in ms. */
  holdMs: number;
  /** Wall-clock limit of one build (source fetch included), in seconds. */
  timeoutSeconds: number;
  /** Builds running at once in this process; further builds wait for a slot. */
  maxConcurrent: number;
  /** Largest source: fetched git objects, and the build directory's files. */
  maxSourceBytes: number;
  /** Largest image a build may produce (compressed layers + config). */
  maxOutputBytes: number;
  /** How long a failed build is remembered (answered without rebuilding), in seconds. */
  failureTtlSeconds: number;
  /** Working space of builds (git fetches, buildah storage, OCI layouts). */
  workDir: string;
  /** The buildah command. */
  buildah: string;
  /** buildpack: the Cloud Native Buildpacks builder image whose lifecycle and buildpacks build `buildpack/…` images. */
  buildpackBuilder: string;
  /** Cloud Build: project, region, builder image, and an API endpoint other than Google's (tests). */
  cloudBuild: { project?: string; location: string; builderImage: string; endpoint?: string };
}

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const storeSpec = env.KONTAIN_STORE?.trim() || './data';
  return {
    port: integer(env, 'PORT', 8080, 0, 65535),
    headersTimeoutSeconds: integer(env, 'KONTAIN_HEADERS_TIMEOUT', 20, 1, 600),
    // Cloud Run sets K_SERVICE; there all connections come from its front end.
    maxConnectionsPerClient: integer(env, 'KONTAIN_MAX_CONNECTIONS_PER_CLIENT', env.K_SERVICE ? 0 : 128, 0, 1_000_000),
    domain: (env.KONTAIN_DOMAIN ?? '').trim().toLowerCase().replace(/^\.+|\.+$/g, ''),
    store: parseStore(storeSpec),
    gcsUrlMode: oneOf(env, 'KONTAIN_GCS_URL_MODE', ['public', 'signed', 'none'] as const, 'public'),
    gcsSignedUrlExpirySeconds: integer(env, 'KONTAIN_GCS_SIGNED_URL_EXPIRY', 900, 1, 7 * 24 * 3600),
    gcsEndpoint: env.KONTAIN_GCS_ENDPOINT?.trim() || undefined,
    logLevel: oneOf(env, 'KONTAIN_LOG_LEVEL', ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const, 'info'),
    manifestCacheBytes: integer(env, 'KONTAIN_MANIFEST_CACHE_BYTES', 64 * 1024 * 1024, 0, Number.MAX_SAFE_INTEGER),
    ttlSeconds: integer(env, 'KONTAIN_TTL', 24 * 3600, 1, Number.MAX_SAFE_INTEGER),
    leaseTTLSeconds: integer(env, 'KONTAIN_LEASE_TTL', 30, 1, 3600),
    gcGraceSeconds: integer(env, 'KONTAIN_GC_GRACE', 3600, 0, Number.MAX_SAFE_INTEGER),
    // setInterval takes at most 2^31-1 ms.
    gcIntervalSeconds: integer(env, 'KONTAIN_GC_INTERVAL', 3600, 0, 2_147_483),
    project: env.GOOGLE_CLOUD_PROJECT?.trim() || undefined,
    insecureRegistries: (env.KONTAIN_INSECURE_REGISTRIES ?? '')
      .split(',')
      .map((entry) => entry.trim().toLowerCase())
      .filter(Boolean)
      .map(insecureRegistry),
    dockerConfigPath: env.KONTAIN_DOCKER_CONFIG?.trim() || undefined,
    mirrorStaleIfError: boolean(env, 'KONTAIN_MIRROR_STALE_IF_ERROR', true),
    mirrorTagTTLSeconds: integer(env, 'KONTAIN_MIRROR_TAG_TTL', 10, 0, 3600),
    upstreamStallMs: integer(env, 'KONTAIN_UPSTREAM_STALL_MS', 30_000, 100, 3600_000),
    upstreamMinRate: integer(env, 'KONTAIN_UPSTREAM_MIN_RATE', 10_240, 0, Number.MAX_SAFE_INTEGER),
    upstreamRateWindowMs: integer(env, 'KONTAIN_UPSTREAM_RATE_WINDOW_MS', 30_000, 100, 3600_000),
    tasks: parseTasks(env),
    derivedMaxBytes: integer(env, 'KONTAIN_DERIVED_MAX_BYTES', 2 * 1024 ** 3, 1024 * 1024, Number.MAX_SAFE_INTEGER),
    derivedMaxEntries: integer(env, 'KONTAIN_DERIVED_MAX_ENTRIES', 200_000, 100, 100_000_000),
    randomMaxBytesAtOnce: integer(env, 'KONTAIN_RANDOM_MAX_BYTES_AT_ONCE', 10_000_000_000, 1, Number.MAX_SAFE_INTEGER),
    goproxy: list(env, 'KONTAIN_GOPROXY', ['https://proxy.golang.org']).map((url) => fetchableURL('KONTAIN_GOPROXY', url)),
    koBaseImage: env.KONTAIN_KO_BASE?.trim() || 'cgr.dev/chainguard/static:latest',
    koBuildTimeoutSeconds: integer(env, 'KONTAIN_KO_BUILD_TIMEOUT', 300, 1, 3600),
    koMaxBuilds: integer(env, 'KONTAIN_KO_MAX_BUILDS', 2, 1, 64),
    koMaxModuleBytes: integer(env, 'KONTAIN_KO_MAX_MODULE_BYTES', 500 * 1024 * 1024, 1024, 500 * 1024 * 1024),
    goCommand: env.KONTAIN_GO?.trim() || 'go',
    koCacheDir: path.resolve(env.KONTAIN_KO_CACHE?.trim() || path.join(tmpdir(), 'kontain-go')),
    apkRepository: fetchableURL('KONTAIN_APK_REPOSITORY', env.KONTAIN_APK_REPOSITORY?.trim() || 'https://packages.wolfi.dev/os'),
    apkKeyring: list(env, 'KONTAIN_APK_KEYRING', ['https://packages.wolfi.dev/os/wolfi-signing.rsa.pub']),
    apkArchs: list(env, 'KONTAIN_APK_ARCHS', ['x86_64']).map((arch) => {
      if (!/^[a-z0-9_]+$/.test(arch)) throw new ConfigError(`KONTAIN_APK_ARCHS entry ${arch} is not an apk architecture name (x86_64, aarch64, …)`);
      return arch;
    }),
    nixPackages: env.KONTAIN_NIX_PACKAGES?.trim() ?? '',
    nixFlake: env.KONTAIN_NIX_FLAKE?.trim() ?? '',
    nixBuildTimeoutSeconds: integer(env, 'KONTAIN_NIX_BUILD_TIMEOUT', 600, 1, 3600),
    nixMaxBuilds: integer(env, 'KONTAIN_NIX_MAX_BUILDS', 2, 1, 64),
    nixMaxLayers: integer(env, 'KONTAIN_NIX_MAX_LAYERS', 64, 2, 120),
    builds: parseBuilds(env),
    staticRoot: env.KONTAIN_STATIC_ROOT?.trim() ? path.resolve(env.KONTAIN_STATIC_ROOT.trim()) : undefined,
    staticPrefix: staticPrefix(env.KONTAIN_STATIC_PREFIX),
    vizRenderTimeoutSeconds: integer(env, 'KONTAIN_VIZ_RENDER_TIMEOUT', 20, 1, 600),
    vizMaxRenders: integer(env, 'KONTAIN_VIZ_MAX_RENDERS', 2, 1, 64),
  };
}

function parseBuilds(env: NodeJS.ProcessEnv): BuildsConfig {
  const executor = oneOf(env, 'KONTAIN_BUILD_EXECUTOR', ['buildah', 'cloudbuild'] as const, 'buildah');
  const gitBase = gitBaseURL(env.KONTAIN_GIT_BASE?.trim() || 'https://github.com');
  const allow = list(env, 'KONTAIN_BUILD_ALLOW', []).map((pattern) => {
    if (!/^[a-z0-9*][a-z0-9._*-]*\/[a-z0-9*][a-z0-9._*-]*$/i.test(pattern)) {
      throw new ConfigError(`KONTAIN_BUILD_ALLOW entry ${pattern} is not an owner/repo pattern (e.g. myorg/app, myorg/*)`);
    }
    return pattern.toLowerCase();
  });
  const holdRaw = env.KONTAIN_BUILD_HOLD?.trim();
  const hold = holdRaw ? Number(holdRaw) : 20;
  if (!Number.isFinite(hold) || hold < 0 || hold > 600) throw new ConfigError(`KONTAIN_BUILD_HOLD=${holdRaw} must be a number of seconds between 0 and 600`);
  const project = env.KONTAIN_CLOUD_BUILD_PROJECT?.trim() || env.GOOGLE_CLOUD_PROJECT?.trim() || undefined;
  if (executor === 'cloudbuild' && !project) throw new ConfigError('KONTAIN_BUILD_EXECUTOR=cloudbuild needs KONTAIN_CLOUD_BUILD_PROJECT (or GOOGLE_CLOUD_PROJECT)');
  if (executor === 'cloudbuild' && !env.KONTAIN_STORE?.trim().startsWith('gs://')) {
    throw new ConfigError('KONTAIN_BUILD_EXECUTOR=cloudbuild needs a gs:// KONTAIN_STORE: sources and built images pass through the bucket');
  }
  const endpoint = env.KONTAIN_CLOUD_BUILD_ENDPOINT?.trim();
  return {
    executor,
    gitBase,
    allow,
    holdMs: Math.round(hold * 1000),
    gitTimeoutSeconds: integer(env, 'KONTAIN_GIT_TIMEOUT', 30, 1, 3600),
    timeoutSeconds: integer(env, 'KONTAIN_BUILD_TIMEOUT', 900, 10, 24 * 3600),
    maxConcurrent: integer(env, 'KONTAIN_BUILD_MAX_CONCURRENT', 2, 1, 64),
    maxSourceBytes: integer(env, 'KONTAIN_BUILD_MAX_SOURCE_BYTES', 200 * 1024 * 1024, 1024, Number.MAX_SAFE_INTEGER),
    maxOutputBytes: integer(env, 'KONTAIN_BUILD_MAX_OUTPUT_BYTES', 2 * 1024 * 1024 * 1024, 1024, Number.MAX_SAFE_INTEGER),
    failureTtlSeconds: integer(env, 'KONTAIN_BUILD_FAILURE_TTL', 600, 0, 7 * 24 * 3600),
    workDir: path.resolve(env.KONTAIN_BUILD_DIR?.trim() || path.join(tmpdir(), 'kontain-builds')),
    buildah: env.KONTAIN_BUILDAH?.trim() || 'buildah',
    // Heroku's builder for Ubuntu 24.04: a maintained LTS base (jammy builders age out first),
    // images for amd64 and arm64, and a current lifecycle (Platform API 0.12+, OCI layout export).
    buildpackBuilder: env.KONTAIN_BUILDPACK_BUILDER?.trim() || 'heroku/builder:24',
    cloudBuild: {
      project,
      location: env.KONTAIN_CLOUD_BUILD_LOCATION?.trim() || 'global',
      builderImage: env.KONTAIN_CLOUD_BUILD_BUILDER?.trim() || 'quay.io/buildah/stable:v1.37',
      endpoint: endpoint ? fetchableURL('KONTAIN_CLOUD_BUILD_ENDPOINT', endpoint) : undefined,
    },
  };
}

/** A name prefix for static names (KONTAIN_STATIC_PREFIX, export's --name-prefix): a repository name or nothing, slashes trimmed. */
export function staticPrefix(raw: string | undefined, what = 'KONTAIN_STATIC_PREFIX'): string {
  const prefix = (raw ?? '').trim().replace(/^\/+|\/+$/g, '');
  if (prefix && !/^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$/.test(prefix)) {
    throw new ConfigError(`${what} ${JSON.stringify(raw)} is not a repository name (lowercase letters, digits, . _ - and /)`);
  }
  return prefix;
}

/** A comma-separated list; unset or empty gives the fallback. */
function list(env: NodeJS.ProcessEnv, name: string, fallback: string[]): string[] {
  const entries = (env[name] ?? '').split(',').map((entry) => entry.trim()).filter(Boolean);
  return entries.length > 0 ? entries : fallback;
}

/** An http(s) or file URL, without its trailing slash. */
function fetchableURL(name: string, raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ConfigError(`${name}=${raw} is not a URL`);
  }
  if (!['http:', 'https:', 'file:'].includes(url.protocol) || url.search || url.hash) {
    throw new ConfigError(`${name}=${raw} must be an http(s) or file URL without query or fragment`);
  }
  return url.toString().replace(/\/+$/, '');
}

/** An http(s) or git:// URL without query, fragment or trailing slash. */
function gitBaseURL(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ConfigError(`KONTAIN_GIT_BASE=${raw} is not a URL`);
  }
  if (!['http:', 'https:', 'git:'].includes(url.protocol) || url.search || url.hash || url.username || url.password) {
    throw new ConfigError(`KONTAIN_GIT_BASE=${raw} must be an http(s) or git:// URL without credentials, query or fragment`);
  }
  return url.toString().replace(/\/+$/, '');
}

const QUEUE = /^projects\/[a-z0-9.:-]+\/locations\/[a-z0-9-]+\/queues\/[A-Za-z0-9-]{1,100}$/;

function parseTasks(env: NodeJS.ProcessEnv): TasksConfig {
  const spec = env.KONTAIN_TASKS?.trim();
  if (!spec || spec === 'embedded') return { kind: 'embedded' };
  if (!QUEUE.test(spec)) throw new ConfigError(`KONTAIN_TASKS=${spec} is not projects/PROJECT/locations/LOCATION/queues/QUEUE (or unset for the embedded queue)`);
  const serviceUrl = httpURL(env, 'KONTAIN_TASKS_SERVICE_URL', true)!;
  const audience = env.KONTAIN_TASKS_AUDIENCE?.trim() || serviceUrl;
  const serviceAccount = env.KONTAIN_TASKS_SERVICE_ACCOUNT?.trim() || undefined;
  if (serviceAccount && !/^[^@\s]+@[^@\s]+$/.test(serviceAccount)) {
    throw new ConfigError(`KONTAIN_TASKS_SERVICE_ACCOUNT=${serviceAccount} is not a service account email`);
  }
  const secret = env.KONTAIN_TASKS_SECRET?.trim() || undefined;
  if (secret !== undefined && secret.length < 16) throw new ConfigError('KONTAIN_TASKS_SECRET must be at least 16 characters');
  // Without either, the task endpoint could not tell Cloud Tasks from anyone else.
  if (!serviceAccount && !secret) {
    throw new ConfigError('KONTAIN_TASKS with a Cloud Tasks queue needs KONTAIN_TASKS_SERVICE_ACCOUNT (OIDC tokens) or KONTAIN_TASKS_SECRET');
  }
  return { kind: 'cloud', queue: spec, serviceUrl, serviceAccount, audience, secret, endpoint: httpURL(env, 'KONTAIN_CLOUD_TASKS_ENDPOINT', false) };
}

/** An http(s) URL with no query or fragment, without its trailing slash. */
function httpURL(env: NodeJS.ProcessEnv, name: string, required: boolean): string | undefined {
  const raw = env[name]?.trim();
  if (!raw) {
    if (required) throw new ConfigError(`${name} must be set to the service's own URL (https://...) when KONTAIN_TASKS names a Cloud Tasks queue`);
    return undefined;
  }
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ConfigError(`${name}=${raw} is not a URL`);
  }
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.search || url.hash) {
    throw new ConfigError(`${name}=${raw} must be an http(s) URL without query or fragment`);
  }
  return url.toString().replace(/\/+$/, '');
}

/**
 * One KONTAIN_INSECURE_REGISTRIES entry: `host`, `host:port`, an IP literal or `[ipv6]:port`.
 * Anything else (a URL with a scheme, a path, a CIDR range) would never match an upstream,
 * so it is refused instead of silently ignored.
 */
function insecureRegistry(entry: string): string {
  const expected = 'host or host:port, for example 127.0.0.1:5000, registry.local or [::1]:5000, without a scheme or path';
  if (entry.includes('/')) {
    const why = /^[0-9a-f.:[\]]+\/\d+$/.test(entry) ? 'CIDR ranges are not supported; list each registry' : 'it has a scheme or path';
    throw new ConfigError(`KONTAIN_INSECURE_REGISTRIES entry ${JSON.stringify(entry)} is not valid (${why}); expected ${expected}`);
  }
  if (isIP(entry) === 6) return entry; // a bare IPv6 literal, no port
  let url: URL | undefined;
  try {
    url = new URL(`http://${entry}`);
  } catch {
    url = undefined;
  }
  // The URL parser normalises what it reads: an entry is valid when it reads back as itself
  // (with the port the entry named, even the scheme's default).
  const host = url && !url.username && !url.password && url.pathname === '/' ? url.hostname : undefined;
  const port = /:(\d{1,5})$/.exec(entry)?.[1];
  const readBack = host === undefined ? undefined : port === undefined ? host : `${host}:${port}`;
  if (readBack !== entry || (port !== undefined && Number(port) > 65535) || !/^[a-z0-9.[\]:-]+$/.test(entry)) {
    throw new ConfigError(`KONTAIN_INSECURE_REGISTRIES entry ${JSON.stringify(entry)} is not valid; expected ${expected}`);
  }
  return entry;
}

function parseStore(spec: string): StoreConfig {
  if (!spec.startsWith('gs://')) return { kind: 'fs', directory: spec };
  const match = /^gs:\/\/([a-z0-9][a-z0-9._-]{1,220}[a-z0-9])(?:\/(.*))?$/.exec(spec);
  if (!match) throw new ConfigError(`KONTAIN_STORE=${spec} is not gs://bucket[/prefix] with a valid bucket name`);
  return { kind: 'gcs', bucket: match[1]!, prefix: (match[2] ?? '').replace(/^\/+|\/+$/g, '') };
}

function integer(env: NodeJS.ProcessEnv, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name]?.trim();
  if (!raw) return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new ConfigError(`${name}=${raw} must be an integer between ${min} and ${max}`);
  }
  return value;
}

function boolean(env: NodeJS.ProcessEnv, name: string, fallback: boolean): boolean {
  const raw = env[name]?.trim().toLowerCase();
  if (!raw) return fallback;
  if (['1', 'true', 'yes', 'on'].includes(raw)) return true;
  if (['0', 'false', 'no', 'off'].includes(raw)) return false;
  throw new ConfigError(`${name}=${raw} must be true or false`);
}

function oneOf<T extends string>(env: NodeJS.ProcessEnv, name: string, values: readonly T[], fallback: T): T {
  const raw = env[name]?.trim();
  if (!raw) return fallback;
  if (!values.includes(raw as T)) throw new ConfigError(`${name}=${raw} must be one of ${values.join(', ')}`);
  return raw as T;
}
