/**
 * One apko image for one architecture, in two steps:
 *
 *   prepare: keyring and indexes (verified, briefly cached) → resolved package set →
 *            the cache key (packages with versions and checksums, repositories, keys,
 *            requested world, image settings, architecture);
 *   assemble (only when that key has no image yet): fetch every package to a temp
 *            directory, verify each, plan file ownership, stream one gzip layer, write
 *            config and manifest.
 *
 * Timings of each phase are returned so the log (and the bench) can say where the time
 * went.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { LRUCache } from 'lru-cache';
import type { ContentStore } from '../content/store.js';
import { writeGzipLayer } from '../oci/layer.js';
import { writeImage } from '../oci/image.js';
import type { Descriptor, ImageConfig } from '../oci/types.js';
import { mapConcurrent } from '../util/concurrency.js';
import { groupFile, passwdFile } from './accounts.js';
import { platformOfApkArch } from './arch.js';
import type { ApkFetcher, Trust } from './fetch.js';
import type { ApkoSettings } from './image-config.js';
import { installedRecord } from './installed-db.js';
import { planInstall } from './install-plan.js';
import { loadKeyring } from './keyring.js';
import { ApkIndexCache, INDEX_TTL_MS } from './repository.js';
import { resolvePackages } from './resolve.js';
import { rootfsTar, type GeneratedFile } from './rootfs.js';
import type { ApkPublicKey } from './signature.js';
import type { ApkPackage } from './types.js';
import { verifyApkPackage, type VerifiedApk } from './verify.js';


export interface ApkoRequest {
  /** The requested packages, as `/etc/apk/world` will list them. */
  world: string[];
  /** Repository base URLs (`<base>/<arch>/APKINDEX.tar.gz`). */
  repositories: string[];
  /** Key URLs or (operator only) paths. */
  keyring: string[];
  /** Who named the repositories and keys. */
  trust: Trust;
  arch: string;
  settings: ApkoSettings;
}

export interface Prepared {
  request: ApkoRequest;
  keyring: ApkPublicKey[];
  packages: ApkPackage[];
  /** sha256 hex of everything that determines the image. */
  key: string;
  indexMs: number;
}

export interface AssembleTimings {
  /** Downloading packages. */
  fetchMs: number;
  /** Signature, checksum and datahash checks (one read of each file). */
  verifyMs: number;
  /** Layer, config and manifest. */
  assembleMs: number;
  bytesFetched: number;
}

const MAX_PACKAGE_BYTES = 2 * 1024 * 1024 * 1024;
const FETCH_CONCURRENCY = 6;
const DEFAULT_ENV: Record<string, string> = {
  PATH: '/usr/local/sbin:/usr/local/bin:/usr/bin:/usr/sbin:/sbin:/bin',
  SSL_CERT_FILE: '/etc/ssl/certs/ca-certificates.crt',
};

export class ApkoBuilder {
  private readonly indexes: ApkIndexCache;
  private readonly keys = new LRUCache<string, ApkPublicKey[]>({ max: 64, ttl: INDEX_TTL_MS });

  constructor(
    private readonly store: ContentStore,
    private readonly fetcher: ApkFetcher,
  ) {
    this.indexes = new ApkIndexCache(fetcher);
  }

  async prepare(request: ApkoRequest): Promise<Prepared> {
    const started = Date.now();
    const keyring = await this.keyring(request);
    const lists = await Promise.all(request.repositories.map((repo) => this.indexes.packages(repo, request.arch, keyring, request.trust)));
    const indexMs = Date.now() - started;
    const packages = resolvePackages(request.world, lists.flat(), { arch: request.arch });
    const key = createHash('sha256')
      .update(
        JSON.stringify({
          arch: request.arch,
          packages: packages.map((p) => `${p.name}=${p.version} ${p.checksum} ${p.repository}`),
          world: request.world,
          repositories: request.repositories,
          keys: keyring.map((k) => [k.name, createHash('sha256').update(k.pem).digest('hex')]),
          settings: request.settings,
        }),
      )
      .digest('hex');
    return { request, keyring, packages, key, indexMs };
  }

  async assemble(prepared: Prepared): Promise<{ descriptor: Descriptor; timings: AssembleTimings }> {
    const { request, packages, keyring } = prepared;
    const dir = await mkdtemp(path.join(tmpdir(), 'kontain-apko-'));
    try {
      let started = Date.now();
      const files = await mapConcurrent(packages, FETCH_CONCURRENCY, async (pkg, i) => {
        const file = path.join(dir, `${i}.apk`);
        const url = `${pkg.repository}/${request.arch}/${pkg.name}-${pkg.version}.apk`;
        const limit = pkg.size > 0 ? pkg.size : MAX_PACKAGE_BYTES;
        const size = await this.fetcher.toFile({ url, trust: request.trust, maxBytes: Math.min(limit, MAX_PACKAGE_BYTES), what: `package ${pkg.name}-${pkg.version}` }, file);
        return { file, url, size };
      });
      const fetchMs = Date.now() - started;
      started = Date.now();
      const verified = await mapConcurrent(packages, FETCH_CONCURRENCY, (pkg, i) =>
        verifyApkPackage(files[i]!.file, pkg, keyring, `package ${pkg.name}-${pkg.version} (${files[i]!.url})`),
      );
      const verifyMs = Date.now() - started;
      started = Date.now();
      const descriptor = await this.writeImage(request, keyring, verified);
      return {
        descriptor,
        timings: { fetchMs, verifyMs, assembleMs: Date.now() - started, bytesFetched: files.reduce((n, f) => n + f.size, 0) },
      };
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  private async keyring(request: ApkoRequest): Promise<ApkPublicKey[]> {
    const cacheKey = `${request.trust}\0${request.keyring.join('\0')}`;
    const hit = this.keys.get(cacheKey);
    if (hit) return hit;
    const keys = await loadKeyring(this.fetcher, request.keyring, request.trust);
    this.keys.set(cacheKey, keys);
    return keys;
  }

  private async writeImage(request: ApkoRequest, keyring: ApkPublicKey[], verified: VerifiedApk[]): Promise<Descriptor> {
    const plan = planInstall(verified);
    const buildTime = Math.max(0, ...verified.map((v) => v.record.buildTime ?? v.head.pkginfo.builddate ?? 0));
    const created = new Date(buildTime * 1000);
    const { settings } = request;
    const accounts = settings.users.length > 0 || settings.groups.length > 0;
    const generate = (captured: ReadonlyMap<string, Buffer>): GeneratedFile[] => {
      const files: GeneratedFile[] = [
        { path: 'etc/apk/world', content: [...new Set(request.world)].sort().join('\n') + '\n' },
        { path: 'etc/apk/repositories', content: request.repositories.join('\n') + '\n' },
        { path: 'etc/apk/arch', content: request.arch + '\n' },
        ...keyring.map((k) => ({ path: `etc/apk/keys/${k.name}`, content: k.pem })),
        { path: 'lib/apk/db/installed', content: plan.packages.map((p) => installedRecord({ ...p.apk.record, replaces: replacesOf(p.apk) }, p.owned)).join('') },
      ];
      if (accounts) {
        files.push({ path: 'etc/passwd', content: passwdFile(captured.get('etc/passwd')?.toString('utf8') ?? '', settings.users) });
        files.push({ path: 'etc/group', content: groupFile(captured.get('etc/group')?.toString('utf8') ?? '', settings.groups) });
      }
      return files;
    };
    // Every generated path is known before the packages stream: the packages' copies of
    // them are held back (and passwd/group merged) instead of written twice.
    const generatedPaths = generate(new Map()).map((f) => f.path);
    const tar = rootfsTar(plan, { mtime: created, capture: generatedPaths, generate });
    // The default gzip level, as apko writes its layers: the image is cached and pulled
    // many times, so its size counts for more than the seconds of the first build.
    const layer = await writeGzipLayer(this.store, tar);
    const env = { ...DEFAULT_ENV, ...settings.environment };
    const platform = platformOfApkArch(request.arch);
    const config: Omit<ImageConfig, 'rootfs'> & Pick<ImageConfig, 'architecture' | 'os'> = {
      created: created.toISOString(),
      author: 'github.com/chainguard-dev/apko',
      architecture: platform.architecture,
      ...(platform.variant ? { variant: platform.variant } : {}),
      os: 'linux',
      config: {
        Env: Object.entries(env)
          .map(([k, v]) => `${k}=${v}`)
          .sort(),
        ...(settings.entrypoint ? { Entrypoint: settings.entrypoint } : {}),
        ...(settings.cmd ? { Cmd: settings.cmd } : {}),
        ...(settings.workDir ? { WorkingDir: settings.workDir } : {}),
        ...(settings.runAs ? { User: settings.runAs } : {}),
      },
      history: [{ created: created.toISOString(), author: 'apko', created_by: `kontain apko: ${request.world.join(' ')}`, comment: verified.map((v) => `${v.record.name}=${v.record.version}`).join(' ') }],
    };
    return writeImage(this.store, { family: 'oci', config, layers: [layer] });
  }
}

/** Replaces as the installed database records it: the index's, else .PKGINFO's. */
function replacesOf(apk: VerifiedApk): string[] | undefined {
  const list = apk.record.replaces?.length ? apk.record.replaces : apk.head.pkginfo.replaces;
  return list.length ? list : undefined;
}
