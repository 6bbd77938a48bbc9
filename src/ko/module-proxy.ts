/**
 * A client of the Go module proxy protocol (golang.org/ref/mod, "GOPROXY protocol") over
 * the operator's proxies: `https://…` or a `file://` directory laid out the same way.
 * Proxies are tried in order; 404 and 410 mean "not here, ask the next one", as the go
 * command treats them. The operator configured these URLs, so no address check applies.
 */
import { createWriteStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { ByteLimit, readLimited } from '../util/byte-limit.js';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import semver from 'semver';
import { escapeModulePath, escapeVersion, modulePathCandidates } from './module-path.js';
import { UpstreamError } from '../remote/errors.js';

/** A module at a canonical version, as `.info` names it. */
export interface ModuleVersion {
  module: string;
  version: string;
  time?: string;
}

/** No proxy has a module holding the package. */
export class ModuleNotFound extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ModuleNotFound';
  }
}

/**
 * A proxy answered with something other than 200/404/410, sent something unusable, or
 * could not be reached: an upstream failure like a registry's, answered the same way
 * (generators/upstream.ts). `status` is the proxy's HTTP status, 0 when it gave none.
 */
export class ModuleProxyError extends UpstreamError {
  override name = 'ModuleProxyError';
  constructor(proxy: string, message: string, failure: { status: number; code?: string }) {
    super({ registry: proxy, status: failure.status, code: failure.code, message });
  }
}

/** How a failed fetch() is told apart: a name that does not exist, a timeout, or no connection. */
function fetchFailureCode(err: unknown): string {
  if ((err as Error).name === 'AbortError' || (err as Error).name === 'TimeoutError') return 'TIMEOUT';
  const cause = (err as { cause?: { code?: string } }).cause;
  return cause?.code === 'ENOTFOUND' ? 'UNRESOLVABLE' : 'UNREACHABLE';
}

/** The module zip is larger than allowed. */
export class ModuleTooLarge extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ModuleTooLarge';
  }
}

export interface ModuleProxyOptions {
  /** Per request, in milliseconds. */
  timeoutMs?: number;
}

const MAX_METADATA_BYTES = 4 * 1024 * 1024;

export class GoModuleProxy {
  private readonly timeoutMs: number;

  constructor(
    readonly proxies: readonly string[],
    options: ModuleProxyOptions = {},
  ) {
    this.timeoutMs = options.timeoutMs ?? 60_000;
  }

  /**
   * The module that provides `importPath` and its version for `query` (`latest`, a
   * version, or a branch or commit the proxy resolves). The longest module path that
   * exists wins. Throws ModuleNotFound saying what was tried.
   */
  async findModule(importPath: string, query: string): Promise<ModuleVersion> {
    // The longest module that exists without the version, for a message that says so.
    let unversioned: { module: string; versions: string[] } | undefined;
    for (const modulePath of modulePathCandidates(importPath)) {
      const found = await this.resolve(modulePath, query);
      if (found) return found;
      if (query !== 'latest' && !unversioned) {
        const versions = await this.versions(modulePath);
        if (versions) unversioned = { module: modulePath, versions };
      }
    }
    if (unversioned) {
      const { module, versions } = unversioned;
      throw new ModuleNotFound(`module ${module} has no version ${query} at ${this.proxies.join(', ')}${versions.length ? ` (versions: ${versions.join(', ')})` : ''}`);
    }
    throw new ModuleNotFound(`no module provides ${importPath} at ${this.proxies.join(', ')} (looked for ${modulePathCandidates(importPath).join(', ')})`);
  }

  /** `query` of one module path, or undefined when no proxy has it. */
  async resolve(modulePath: string, query: string): Promise<ModuleVersion | undefined> {
    if (query === 'latest') return this.latest(modulePath);
    const info = await this.get(`${escapeModulePath(modulePath)}/@v/${escapeVersion(query)}.info`);
    return info && parseInfo(modulePath, info);
  }

  /** The versions the proxy lists (releases and pre-releases; no pseudo-versions), or undefined for an unknown module. */
  async versions(modulePath: string): Promise<string[] | undefined> {
    const list = await this.get(`${escapeModulePath(modulePath)}/@v/list`);
    if (!list) return undefined;
    return list
      .toString('utf8')
      .split('\n')
      .map((line) => line.trim())
      .filter((v) => v.startsWith('v') && semver.valid(v.slice(1)) !== null);
  }

  /** `@latest` as the go command picks it: the highest release, else the highest pre-release, else the proxy's `@latest`. */
  private async latest(modulePath: string): Promise<ModuleVersion | undefined> {
    const listed = (await this.versions(modulePath)) ?? [];
    const sorted = [...listed].sort((a, b) => semver.compare(a.slice(1), b.slice(1)));
    const releases = sorted.filter((v) => semver.prerelease(v.slice(1)) === null);
    const pick = releases.at(-1) ?? sorted.at(-1);
    if (pick) return this.resolve(modulePath, pick);
    const info = await this.get(`${escapeModulePath(modulePath)}/@latest`);
    return info && parseInfo(modulePath, info);
  }

  /** Writes the module zip to `file`; more than `maxBytes` is ModuleTooLarge. */
  async downloadZip(module: ModuleVersion, file: string, maxBytes: number): Promise<void> {
    const suffix = `${escapeModulePath(module.module)}/@v/${escapeVersion(module.version)}.zip`;
    for (const proxy of this.proxies) {
      const body = await this.open(proxy, suffix);
      if (!body) continue;
      const limit = new ByteLimit(maxBytes, () => new ModuleTooLarge(`module zip ${module.module}@${module.version} is larger than ${maxBytes} bytes`));
      await pipeline(body, limit, createWriteStream(file));
      return;
    }
    throw new ModuleNotFound(`no proxy has the zip of ${module.module}@${module.version} (${this.proxies.join(', ')})`);
  }

  /** The first proxy's answer for a small file, or undefined when every proxy says "not here". */
  private async get(suffix: string): Promise<Buffer | undefined> {
    for (const proxy of this.proxies) {
      const body = await this.open(proxy, suffix);
      if (!body) continue;
      return readLimited(body, MAX_METADATA_BYTES, () => new ModuleProxyError(proxy, `${proxy}/${suffix} is larger than ${MAX_METADATA_BYTES} bytes`, { status: 200, code: 'SIZE_INVALID' }));
    }
    return undefined;
  }

  /** One proxy's body for a path, or undefined for "not here" (404, 410, a missing file). */
  private async open(proxy: string, suffix: string): Promise<Readable | undefined> {
    const url = `${proxy}/${suffix}`;
    if (proxy.startsWith('file:')) {
      const file = fileURLToPath(url);
      try {
        const handle = await open(file, 'r');
        return handle.createReadStream();
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR') return undefined;
        throw new ModuleProxyError(proxy, `reading ${url}: ${(err as Error).message}`, { status: 0, code: 'UNREACHABLE' });
      }
    }
    // The time limit is for the answer to start and then for each stall, not the whole
    // body: a zip of hundreds of megabytes may take longer than a minute to arrive.
    const abort = new AbortController();
    let timer = setTimeout(() => abort.abort(new ModuleProxyError(proxy, `module proxy ${proxy} sent no answer for ${suffix} in ${this.timeoutMs} ms`, { status: 0, code: 'TIMEOUT' })), this.timeoutMs);
    let response: Response;
    try {
      response = await fetch(url, { redirect: 'follow', signal: abort.signal });
    } catch (err) {
      clearTimeout(timer);
      if (err instanceof ModuleProxyError) throw err;
      const detail = (err as { cause?: Error }).cause?.message ?? (err as Error).message;
      throw new ModuleProxyError(proxy, `module proxy ${proxy} could not be reached for ${suffix}: ${detail}`, { status: 0, code: fetchFailureCode(err) });
    }
    clearTimeout(timer);
    if (response.status === 404 || response.status === 410) {
      await response.body?.cancel();
      return undefined;
    }
    if (response.status !== 200 || !response.body) {
      const text = (await response.text().catch(() => '')).slice(0, 300).trim();
      throw new ModuleProxyError(proxy, `module proxy ${proxy} answered ${response.status} for ${suffix}${text ? `: ${text}` : ''}`, { status: response.status });
    }
    const body = Readable.fromWeb(response.body as import('node:stream/web').ReadableStream);
    const stalled = () => abort.abort(new ModuleProxyError(proxy, `module proxy ${proxy} stopped sending ${suffix} for ${this.timeoutMs} ms`, { status: 0, code: 'TIMEOUT' }));
    timer = setTimeout(stalled, this.timeoutMs);
    body.on('data', () => timer.refresh());
    body.once('close', () => clearTimeout(timer));
    return body;
  }
}

function parseInfo(modulePath: string, bytes: Buffer): ModuleVersion {
  let info: { Version?: unknown; Time?: unknown };
  try {
    info = JSON.parse(bytes.toString('utf8')) as typeof info;
  } catch {
    throw new ModuleProxyError('module proxy', `the .info of ${modulePath} is not JSON`, { status: 200, code: 'MANIFEST_INVALID' });
  }
  if (typeof info.Version !== 'string' || !/^v[0-9A-Za-z.+-]+$/.test(info.Version)) {
    throw new ModuleProxyError('module proxy', `the .info of ${modulePath} has no valid Version`, { status: 200, code: 'MANIFEST_INVALID' });
  }
  return { module: modulePath, version: info.Version, ...(typeof info.Time === 'string' ? { time: info.Time } : {}) };
}
