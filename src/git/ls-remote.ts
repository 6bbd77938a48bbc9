/**
 * `git ls-remote` without starting git: the ref advertisement of the smart protocol (v0),
 * over git:// (git daemon) or http(s) (`/info/refs?service=git-upload-pack`). Every pull
 * of a branch or tag asks it, and starting a git process costs more than the rest of a
 * cached pull; the advertisement is a few pkt-lines, so it is read here. Hand-written
 * because the npm git clients speak http(s) only and buffer whole answers; this one is
 * bounded and connects to the address the policy checked.
 */
import { connect, type Socket } from 'node:net';
import http from 'node:http';
import https from 'node:https';
import { readLimited } from '../util/byte-limit.js';

export class LsRemoteNotFound extends Error {
  override name = 'LsRemoteNotFound';
}

export class LsRemoteFailed extends Error {
  override name = 'LsRemoteFailed';
}

export interface LsRemoteTarget {
  url: URL;
  /** The address to connect to (already checked against the address policy). */
  address: string;
  port: number;
  /**
   * Time the whole listing may take. An idle timeout alone is not enough: a server that
   * sends a byte now and then would hold the pull forever.
   */
  timeoutMs: number;
  maxBytes: number;
}

/** Ref name → commit, as `git ls-remote` lists them (HEAD, refs/heads/*, refs/tags/*, peeled `^{}`). */
export async function lsRemote(target: LsRemoteTarget): Promise<Map<string, string>> {
  const body = target.url.protocol === 'git:' ? await viaGitDaemon(target) : await viaHttp(target);
  return parseAdvertisement(body, target.url.protocol !== 'git:', target.url.toString());
}

function viaGitDaemon(target: LsRemoteTarget): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const socket: Socket = connect({ host: target.address, port: target.port });
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const done = (err?: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(deadline);
      socket.destroy();
      if (err) reject(err);
      else resolve(Buffer.concat(chunks));
    };
    const deadline = setTimeout(() => done(overTime(target)), target.timeoutMs);
    socket.once('connect', () => {
      const hostHeader = target.url.port ? `${target.url.hostname}:${target.url.port}` : target.url.hostname;
      socket.write(pktLine(`git-upload-pack ${target.url.pathname}\0host=${hostHeader}\0`));
    });
    socket.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > target.maxBytes) return done(new LsRemoteFailed(`${target.url} advertises more than ${target.maxBytes} bytes of refs`));
      chunks.push(chunk);
      // The advertisement ends with a flush packet; say goodbye with one of ours.
      if (endsWithFlush(Buffer.concat(chunks))) {
        socket.end('0000');
        done();
      }
    });
    socket.once('error', (err) => done(new LsRemoteFailed(`${target.url}: ${err.message}`)));
    socket.once('end', () => done());
  });
}

function viaHttp(target: LsRemoteTarget): Promise<Buffer> {
  const url = new URL(`${target.url.toString().replace(/\/$/, '')}/info/refs?service=git-upload-pack`);
  const client = url.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    const deadline = setTimeout(() => {
      reject(overTime(target));
      req.destroy();
    }, target.timeoutMs);
    const settle = <T>(fn: (value: T) => void) => (value: T) => {
      clearTimeout(deadline);
      fn(value);
    };
    resolve = settle(resolve);
    reject = settle(reject);
    const req = client.get(
      url,
      {
        headers: { 'User-Agent': 'git/kontain', Accept: 'application/x-git-upload-pack-advertisement' },
        // Connect to the checked address; TLS still verifies the host name.
        lookup: (_hostname, options, callback) => {
          const family = target.address.includes(':') ? 6 : 4;
          if ((options as { all?: boolean }).all) (callback as (err: null, addresses: Array<{ address: string; family: number }>) => void)(null, [{ address: target.address, family }]);
          else (callback as (err: null, address: string, family: number) => void)(null, target.address, family);
        },
        timeout: target.timeoutMs,
        agent: false,
      },
      (res) => {
        if (res.statusCode === 404 || res.statusCode === 401 || res.statusCode === 403) {
          res.resume();
          reject(new LsRemoteNotFound(`${target.url} does not exist or is not readable (HTTP ${res.statusCode})`));
          return;
        }
        if (res.statusCode !== 200) {
          res.resume();
          reject(new LsRemoteFailed(`${target.url} answered HTTP ${res.statusCode} to the ref listing`));
          return;
        }
        readLimited(res, target.maxBytes, () => new LsRemoteFailed(`${target.url} advertises more than ${target.maxBytes} bytes of refs`)).then(resolve, reject);
      },
    );
    req.on('timeout', () => req.destroy(overTime(target)));
    req.on('error', (err) => reject(err instanceof LsRemoteFailed || err instanceof LsRemoteNotFound ? err : new LsRemoteFailed(`${target.url}: ${err.message}`)));
  });
}


function overTime(target: LsRemoteTarget): LsRemoteFailed {
  return new LsRemoteFailed(`${target.url} did not send its ref listing within ${target.timeoutMs / 1000} s (KONTAIN_GIT_TIMEOUT)`);
}

function pktLine(text: string): Buffer {
  const payload = Buffer.from(text);
  return Buffer.concat([Buffer.from((payload.length + 4).toString(16).padStart(4, '0')), payload]);
}

/** Whether a complete sequence of pkt-lines ends with a flush (`0000`). */
function endsWithFlush(buffer: Buffer): boolean {
  let offset = 0;
  let last = -1;
  while (offset + 4 <= buffer.length) {
    const length = parseInt(buffer.subarray(offset, offset + 4).toString('latin1'), 16);
    if (Number.isNaN(length)) return false;
    last = length;
    offset += length === 0 ? 4 : length;
  }
  return offset === buffer.length && last === 0;
}

/**
 * The commit a ref listing gives `name` as a branch, else as a tag (the peeled commit of an
 * annotated tag before the tag object), with what it named; undefined when it is neither.
 */
export function branchOrTagCommit(refs: ReadonlyMap<string, string>, name: string): { commit: string; via: string } | undefined {
  const branch = refs.get(`refs/heads/${name}`);
  if (branch) return { commit: branch, via: `branch ${name}` };
  const tag = refs.get(`refs/tags/${name}^{}`) ?? refs.get(`refs/tags/${name}`);
  if (tag) return { commit: tag, via: `tag ${name}` };
  return undefined;
}

/** The refs of a v0 advertisement; over HTTP it starts with `# service=git-upload-pack` and a flush. */
export function parseAdvertisement(buffer: Buffer, smartHttp: boolean, what: string): Map<string, string> {
  const refs = new Map<string, string>();
  let offset = 0;
  let skippedService = !smartHttp;
  while (offset + 4 <= buffer.length) {
    const length = parseInt(buffer.subarray(offset, offset + 4).toString('latin1'), 16);
    if (Number.isNaN(length) || (length !== 0 && length < 4) || offset + Math.max(length, 4) > buffer.length) {
      throw new LsRemoteFailed(`${what} sent a malformed ref listing`);
    }
    if (length === 0) {
      offset += 4;
      if (!skippedService) {
        skippedService = true;
        continue;
      }
      break;
    }
    const line = buffer.subarray(offset + 4, offset + length).toString('utf8').replace(/\n$/, '');
    offset += length;
    if (!skippedService) {
      if (!line.startsWith('# service=')) throw new LsRemoteFailed(`${what} is not a git smart HTTP server`);
      continue;
    }
    if (line.startsWith('ERR ')) {
      const message = line.slice(4);
      if (/not found|not exported|does not exist|access denied/i.test(message)) throw new LsRemoteNotFound(`${what}: ${message}`);
      throw new LsRemoteFailed(`${what}: ${message}`);
    }
    const [entry] = line.split('\0');
    const match = /^([0-9a-f]{40}) (\S+)$/.exec(entry!);
    if (match && match[2] !== 'capabilities^{}') refs.set(match[2]!, match[1]!);
  }
  if (!skippedService) throw new LsRemoteFailed(`${what} is not a git smart HTTP server`);
  if (offset === 0) throw new LsRemoteNotFound(`${what} does not exist or is not readable`);
  return refs;
}
