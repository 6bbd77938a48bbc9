/**
 * Git sources for builds: the ref listing (what `git ls-remote` shows, read natively in
 * ls-remote.ts) resolves a revision on every pull (cheap, no API token, no rate limit),
 * and a shallow fetch of exactly that commit by git itself gives the files. The server's address obeys the mirror's policy (no loopback,
 * private or metadata addresses unless listed in KONTAIN_INSECURE_REGISTRIES), and for
 * http(s) git connects to the very address that was checked.
 */
import { mkdir, mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { AddressPolicy } from '../remote/address-safety.js';
import { runProcess } from '../util/run-process.js';
import { branchOrTagCommit, lsRemote, LsRemoteNotFound } from './ls-remote.js';

/** The repository or revision does not exist, or the server refused it. */
export class GitSourceNotFound extends Error {
  override name = 'GitSourceNotFound';
}

/** The source broke a bound (size, time) or a rule (address policy); the message says which. */
export class GitSourceRefused extends Error {
  override name = 'GitSourceRefused';
}

/** The git server could not be reached or answered with an error. */
export class GitSourceUnavailable extends Error {
  override name = 'GitSourceUnavailable';
}

export interface GitSourceOptions {
  /** `https://github.com`, `git://127.0.0.1:9418`, … */
  base: string;
  insecureRegistries: readonly string[];
  /** Working directories of fetches live under here. */
  workDir: string;
  maxSourceBytes: number;
  /** Time limit of one ls-remote, in ms. */
  lsRemoteTimeoutMs?: number;
  /** Time limit of one fetch, in ms. */
  fetchTimeoutMs?: number;
}

export interface ResolvedRevision {
  commit: string;
  /** What the revision named: `branch main`, `tag v1`, `commit abc1234`, `default branch`. */
  via: string;
}

const FULL_COMMIT = /^[0-9a-f]{40}$/;
const SHORT_COMMIT = /^[0-9a-f]{4,39}$/;
/** A git name component as GitHub allows it (and nothing that reads as a path trick). */
const NAME_PART = /^[a-z0-9_.-]{1,100}$/i;
const MAX_LS_REMOTE_BYTES = 4 * 1024 * 1024;
const SIZE_POLL_MS = 200;

export class GitSource {
  private readonly policy: AddressPolicy;
  private readonly base: URL;

  constructor(private readonly options: GitSourceOptions) {
    this.policy = new AddressPolicy({ insecureRegistries: options.insecureRegistries });
    this.base = new URL(options.base);
  }

  /** `<base>/<owner>/<repo>`, for messages and for git. */
  repositoryURL(owner: string, repo: string): string {
    if (!NAME_PART.test(owner) || !NAME_PART.test(repo) || /^\.+$/.test(owner) || /^\.+$/.test(repo)) {
      throw new GitSourceRefused(`${owner}/${repo} is not a repository name`);
    }
    return `${this.options.base}/${owner}/${repo}`;
  }

  /**
   * The commit a revision names, asked of the server each time: `latest` is the default
   * branch (HEAD), then a branch, a tag (peeled to its commit), a full commit, or an
   * abbreviated commit that starts exactly one branch or tag tip.
   */
  async resolve(owner: string, repo: string, revision: string, signal?: AbortSignal): Promise<ResolvedRevision> {
    const url = this.repositoryURL(owner, repo);
    if (FULL_COMMIT.test(revision)) return { commit: revision, via: `commit ${revision.slice(0, 7)}` };
    const refs = await this.lsRemote(url);
    if (revision === 'latest') {
      const head = refs.get('HEAD');
      if (!head) throw new GitSourceNotFound(`${url} has no default branch (HEAD)`);
      return { commit: head, via: 'default branch' };
    }
    const named = branchOrTagCommit(refs, revision);
    if (named) return named;
    if (SHORT_COMMIT.test(revision)) {
      const matches = new Set([...refs.values()].filter((commit) => commit.startsWith(revision)));
      if (matches.size === 1) return { commit: [...matches][0]!, via: `commit ${revision}` };
      if (matches.size > 1) throw new GitSourceNotFound(`${revision} is the start of several commits in ${url}; use more of it`);
      throw new GitSourceNotFound(
        `${revision} is not a branch or tag of ${url}, nor the start of a branch or tag tip's commit; name an older commit by its full 40-character hash`,
      );
    }
    throw new GitSourceNotFound(`${url} has no branch or tag ${revision}`);
  }

  /**
   * Fetches one commit (depth 1) and writes the files under `dir` of it into `destination`.
   * Bounded: the fetched objects and the files written may not pass maxSourceBytes.
   * Returns the commit's time (seconds since the epoch), for reproducible image times.
   */
  async checkout(owner: string, repo: string, commit: string, dir: string, destination: string, signal?: AbortSignal): Promise<{ commitTime: number }> {
    const url = this.repositoryURL(owner, repo);
    await mkdir(this.options.workDir, { recursive: true });
    const gitDir = await mkdtemp(path.join(this.options.workDir, 'git-'));
    try {
      await this.git(['init', '-q', '--bare', gitDir], { timeoutMs: 30_000, signal });
      await this.fetch(url, gitDir, commit, signal);
      const treeish = dir ? `${commit}:${dir}` : commit;
      let commitTime = 0;
      // The commit's time is read while the tree is sized: one git process less on the way to the build.
      const [size] = await Promise.all([
        this.treeSize(gitDir, treeish, url, dir, commit, signal),
        this.git(['--git-dir', gitDir, 'show', '-s', '--format=%ct', commit], {
          timeoutMs: 30_000,
          signal,
          onLine: (line) => {
            if (/^\d+$/.test(line)) commitTime = Number(line);
          },
        }),
      ]);
      if (size > this.options.maxSourceBytes) {
        throw new GitSourceRefused(`${url} at ${commit.slice(0, 7)}${dir ? ` (${dir})` : ''} has ${size} bytes of files, more than the limit of ${this.options.maxSourceBytes} (KONTAIN_BUILD_MAX_SOURCE_BYTES)`);
      }
      await mkdir(destination, { recursive: true });
      await this.archive(gitDir, treeish, destination, signal);
      return { commitTime };
    } finally {
      await rm(gitDir, { recursive: true, force: true });
    }
  }

  private async lsRemote(url: string): Promise<Map<string, string>> {
    const { address, port } = await this.checkedAddress();
    try {
      return await lsRemote({ url: new URL(url), address, port, timeoutMs: this.options.lsRemoteTimeoutMs ?? 30_000, maxBytes: MAX_LS_REMOTE_BYTES });
    } catch (err) {
      if (err instanceof LsRemoteNotFound) throw new GitSourceNotFound(`${url}: the repository does not exist or is not readable`);
      throw new GitSourceUnavailable(`listing the refs of ${url} failed: ${(err as Error).message}`);
    }
  }

  private async fetch(url: string, gitDir: string, commit: string, signal?: AbortSignal): Promise<void> {
    const lines: string[] = [];
    const controller = new AbortController();
    const onAbort = () => controller.abort();
    signal?.addEventListener('abort', onAbort, { once: true });
    let tooLarge = false;
    // git fetch has no size limit: watch the pack grow and stop it.
    const watch = setInterval(() => {
      directoryBytes(gitDir).then((bytes) => {
        if (bytes > this.options.maxSourceBytes) {
          tooLarge = true;
          controller.abort();
        }
      }, () => undefined);
    }, SIZE_POLL_MS);
    const timeoutMs = this.options.fetchTimeoutMs ?? 300_000;
    try {
      const outcome = await this.git(['--git-dir', gitDir, 'fetch', '-q', '--depth', '1', '--no-tags', '--', url, commit], {
        timeoutMs,
        signal: controller.signal,
        onLine: (line) => lines.push(line),
      });
      if (tooLarge || (outcome.code === 0 && (await directoryBytes(gitDir)) > this.options.maxSourceBytes)) {
        throw new GitSourceRefused(`${url} at ${commit.slice(0, 7)} is larger than the source limit of ${this.options.maxSourceBytes} bytes (KONTAIN_BUILD_MAX_SOURCE_BYTES)`);
      }
      if (outcome.timedOut) throw new GitSourceUnavailable(`fetching ${url} at ${commit.slice(0, 7)} took longer than ${timeoutMs / 1000} s (ten times KONTAIN_GIT_TIMEOUT)`);
      if (outcome.aborted) throw new GitSourceUnavailable(`fetching ${url} was stopped`);
      if (outcome.code !== 0) {
        const text = lines.join('\n');
        if (/not our ref|couldn't find remote ref|no such remote ref|unadvertised object/i.test(text)) {
          throw new GitSourceNotFound(`${url} has no commit ${commit}`);
        }
        throw gitFailure(`git fetch ${url} ${commit.slice(0, 7)}`, lines);
      }
    } finally {
      clearInterval(watch);
      signal?.removeEventListener('abort', onAbort);
    }
  }

  /** The bytes of every file under the tree (blob sizes from `ls-tree -l`). */
  private async treeSize(gitDir: string, treeish: string, url: string, dir: string, commit: string, signal?: AbortSignal): Promise<number> {
    let total = 0;
    const errors: string[] = [];
    const outcome = await this.git(['--git-dir', gitDir, 'ls-tree', '-r', '-l', treeish], {
      timeoutMs: 60_000,
      signal,
      onLine: (line) => {
        const match = /^\d+ blob [0-9a-f]+\s+(\d+)\t/.exec(line);
        if (match) total += Number(match[1]);
        else if (!/^\d+ commit /.test(line)) errors.push(line);
      },
    });
    if (outcome.code !== 0) {
      if (dir) throw new GitSourceNotFound(`${url} at ${commit.slice(0, 7)} has no directory ${dir}`);
      throw gitFailure(`git ls-tree ${treeish}`, errors);
    }
    return total;
  }

  /** `git archive <tree> | tar -x`: the files only, no .git, nothing outside the destination. */
  private async archive(gitDir: string, treeish: string, destination: string, signal?: AbortSignal): Promise<void> {
    const errors: string[] = [];
    let tarDone: Promise<{ code: number | null }> | undefined;
    const outcome = await this.git(['--git-dir', gitDir, 'archive', '--format=tar', treeish], {
      timeoutMs: 120_000,
      signal,
      onLine: (line) => errors.push(line),
      stdout: (stream) => {
        tarDone = runProcess('tar', ['-x', '--no-same-owner', '-C', destination], {
          timeoutMs: 120_000,
          signal,
          onLine: (line) => errors.push(line),
          stdin: (stdin) => stream.pipe(stdin),
        });
      },
    });
    const tar = await tarDone;
    if (outcome.code !== 0 || tar?.code !== 0) throw gitFailure(`git archive ${treeish}`, errors);
  }

  /**
   * git with nothing from the machine's or user's configuration, no prompts, only network
   * protocols, no redirects (they could lead anywhere), and http(s) pinned to the address
   * the policy checked.
   */
  private async git(args: string[], options: Parameters<typeof runProcess>[2] & { signal?: AbortSignal }) {
    const pinned = await this.pinnedAddress();
    const config = ['-c', 'protocol.allow=never', '-c', 'protocol.https.allow=always', '-c', 'protocol.http.allow=always', '-c', 'protocol.git.allow=always', '-c', 'http.followRedirects=false', '-c', 'core.hooksPath=/dev/null'];
    if (pinned) config.push('-c', `http.curloptResolve=${pinned}`);
    const home = this.options.workDir;
    try {
      return await runProcess('git', [...config, ...args], {
        ...options,
        env: {
          PATH: process.env.PATH ?? '/usr/bin:/bin',
          HOME: home,
          GIT_CONFIG_NOSYSTEM: '1',
          GIT_CONFIG_GLOBAL: '/dev/null',
          GIT_TERMINAL_PROMPT: '0',
          GIT_ASKPASS: '/bin/false',
          GIT_SSH_COMMAND: '/bin/false',
          LC_ALL: 'C',
        },
      });
    } catch (err) {
      throw new GitSourceUnavailable(`this server cannot run git (install Debian's git): ${(err as Error).message}`);
    }
  }

  /** The git server's address, checked against the policy. */
  private async checkedAddress(): Promise<{ host: string; address: string; port: number }> {
    const { hostname, protocol } = this.base;
    const port = Number(this.base.port) || (protocol === 'https:' ? 443 : protocol === 'http:' ? 80 : 9418);
    const host = hostname.replace(/^\[|\]$/g, '');
    try {
      return { host, port, address: (await this.policy.resolve(`git server ${this.base.host}`, host, port)).address };
    } catch (err) {
      throw new GitSourceRefused(`KONTAIN_GIT_BASE ${this.options.base}: ${(err as Error).message}`);
    }
  }

  /** For http(s), curl's `host:port:address` pin of the checked address. */
  private async pinnedAddress(): Promise<string | undefined> {
    const { host, address, port } = await this.checkedAddress();
    if (this.base.protocol !== 'http:' && this.base.protocol !== 'https:') return undefined;
    return `${host}:${port}:${address.includes(':') ? `[${address}]` : address}`;
  }
}

function gitFailure(what: string, lines: string[]): Error {
  const text = lines.filter(Boolean).slice(-5).join('\n').slice(0, 1000);
  if (/not found|does not exist|repository .* not found|Could not read from remote|access denied|not exported/i.test(text)) {
    return new GitSourceNotFound(`${what}: the repository does not exist or is not readable${text ? `:\n${text}` : ''}`);
  }
  return new GitSourceUnavailable(`${what} failed${text ? `:\n${text}` : ''}`);
}

/** Bytes of the files under a directory (an estimate of disk use; fetches watch it). */
export async function directoryBytes(dir: string): Promise<number> {
  let total = 0;
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  for (const entry of entries) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) total += await directoryBytes(full);
    else if (entry.isFile()) total += (await stat(full).catch(() => ({ size: 0 }))).size;
  }
  return total;
}
