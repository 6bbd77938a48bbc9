/**
 * Where `nix/<pkg>/...` packages come from (KONTAIN_NIX_PACKAGES), and what the image's
 * tag pins of it:
 *
 *   git+<url>[?ref=<branch>]   a git repository whose root default.nix is the package set
 *                              (or a function taking `{ }`, as nixpkgs' is). The tag picks
 *                              the revision: `latest` is the branch of `ref` (else the
 *                              repository's HEAD); a 40-hex tag is that commit; any other
 *                              tag is a branch, then a tag, of the repository.
 *   any other text             a Nix expression evaluating to the package set; only
 *                              `latest`. Its revision (nixpkgs' revisionWithDefault, else
 *                              a hash of the text) is read by one evaluation at most every
 *                              EXPRESSION_REVISION_MS.
 *
 * The revision is found without evaluating anything (a ref listing for git), so a pull
 * of an image already made runs no Nix at all; Nix evaluates only what is new.
 */
import { createHash } from 'node:crypto';
import { lookup } from 'node:dns/promises';
import { fileURLToPath } from 'node:url';
import { RegistryError } from '../registry/errors.js';
import { branchOrTagCommit, lsRemote, LsRemoteNotFound } from '../git/ls-remote.js';
import { runProcess } from '../util/run-process.js';

export type PackageSource = { kind: 'git'; url: string; ref?: string } | { kind: 'expression'; text: string };

/** The package set at one revision. */
export interface PackageSetAt {
  /** A Nix expression evaluating to the package set. */
  expression: string;
  /** What identifies its content: a commit, or the expression's revision. */
  revision: string;
  /** What the tag named: `branch main`, `commit 0123abc`, `the expression`. */
  via: string;
}

const FULL_COMMIT = /^[0-9a-f]{40}$/;
const EXPRESSION_REVISION_MS = 5 * 60 * 1000;
const MAX_REFS_BYTES = 4 * 1024 * 1024;

export function parsePackageSource(text: string): PackageSource {
  if (!text.startsWith('git+')) return { kind: 'expression', text };
  const url = new URL(text.slice('git+'.length));
  if (!['https:', 'http:', 'git:', 'file:'].includes(url.protocol)) throw new Error(`KONTAIN_NIX_PACKAGES: git+${url.protocol} is not a git source kontain reads (https, http, git, file)`);
  const ref = url.searchParams.get('ref') ?? undefined;
  url.search = '';
  return { kind: 'git', url: url.toString(), ref };
}

/** A Nix string literal of `text` (JSON's escapes, and `${` kept literal). */
export function nixString(text: string): string {
  return JSON.stringify(text).replace(/\$\{/g, '\\${');
}

/** The package set's expression at a git commit, fetched by Nix itself. */
export function gitPackageSet(url: string, commit: string): string {
  return `let set = import (builtins.fetchGit { url = ${nixString(url)}; rev = "${commit}"; allRefs = true; }); in if builtins.isFunction set then set { } else set`;
}

export class PackageSets {
  private expressionRevision?: { revision: string; at: number };

  constructor(
    readonly source: PackageSource,
    private readonly options: {
      /** Time limit of one ref listing (KONTAIN_GIT_TIMEOUT). */
      timeoutMs: number;
      /** The expression's revision by evaluation (the Nix resolver asked for no packages). */
      evaluateRevision: (expression: string, signal?: AbortSignal) => Promise<string>;
    },
  ) {}

  /** The set the tag names; MANIFEST_UNKNOWN when it names nothing. */
  async at(tag: string, signal?: AbortSignal): Promise<PackageSetAt> {
    if (this.source.kind === 'expression') {
      if (tag !== 'latest') {
        throw new RegistryError('MANIFEST_UNKNOWN', `nix packages come from the operator's package set as it is now, so the only tag is latest (got ${tag}); a git package set (git+<url>) takes a branch, tag or commit`);
      }
      return { expression: this.source.text, revision: await this.revisionOfExpression(signal), via: 'the expression' };
    }
    const { commit, via } = await resolveGitTag(this.source.url, tag === 'latest' ? (this.source.ref ?? 'HEAD') : tag, this.options.timeoutMs);
    return { expression: gitPackageSet(this.source.url, commit), revision: commit, via };
  }

  private async revisionOfExpression(signal?: AbortSignal): Promise<string> {
    const known = this.expressionRevision;
    if (known && Date.now() - known.at < EXPRESSION_REVISION_MS) return known.revision;
    const text = (this.source as { text: string }).text;
    const revision = (await this.options.evaluateRevision(text, signal)) || createHash('sha256').update(text).digest('hex').slice(0, 16);
    this.expressionRevision = { revision, at: Date.now() };
    return revision;
  }
}

/**
 * The commit `name` stands for in the repository: HEAD, a full commit as it is, a branch,
 * else a tag (peeled). Read from the ref listing: natively for network URLs, by `git
 * ls-remote` for a local repository (file:).
 */
export async function resolveGitTag(url: string, name: string, timeoutMs: number): Promise<{ commit: string; via: string }> {
  if (FULL_COMMIT.test(name)) return { commit: name, via: `commit ${name.slice(0, 7)}` };
  const refs = await listRefs(url, timeoutMs);
  if (name === 'HEAD') {
    const head = refs.get('HEAD');
    if (head) return { commit: head, via: 'default branch' };
  } else {
    const found = branchOrTagCommit(refs, name);
    if (found) return found;
  }
  throw new RegistryError('MANIFEST_UNKNOWN', name === 'HEAD' ? `${url} has no default branch (HEAD)` : `${url} has no branch or tag ${name} (a commit is named by its full 40-character hash)`);
}

async function listRefs(url: string, timeoutMs: number): Promise<Map<string, string>> {
  const parsed = new URL(url);
  try {
    if (parsed.protocol === 'file:') return await localRefs(fileURLToPath(parsed), timeoutMs);
    const { address } = await lookup(parsed.hostname);
    const port = Number(parsed.port) || (parsed.protocol === 'git:' ? 9418 : parsed.protocol === 'https:' ? 443 : 80);
    return await lsRemote({ url: parsed, address, port, timeoutMs, maxBytes: MAX_REFS_BYTES });
  } catch (err) {
    if (err instanceof RegistryError) throw err;
    if (err instanceof LsRemoteNotFound) throw new RegistryError('UNAVAILABLE', `the package set's repository ${url} does not exist or is not readable`, { status: 424 });
    throw new RegistryError('UNAVAILABLE', `listing the refs of the package set's repository ${url} failed: ${(err as Error).message}`, { status: 424 });
  }
}

/** `git ls-remote` of a repository on this machine (a process, but no network and no Nix). */
async function localRefs(dir: string, timeoutMs: number): Promise<Map<string, string>> {
  const refs = new Map<string, string>();
  let bytes = 0;
  const outcome = await runProcess('git', ['ls-remote', '--', dir], {
    timeoutMs,
    onLine: (line) => {
      bytes += line.length;
      const match = /^([0-9a-f]{40})\t(\S+)$/.exec(line);
      if (match && bytes <= MAX_REFS_BYTES) refs.set(match[2]!, match[1]!);
    },
  });
  if (outcome.code !== 0) throw new Error(`git ls-remote ${dir} ended with ${outcome.timedOut ? 'a timeout' : `exit ${outcome.code}`}`);
  return refs;
}
