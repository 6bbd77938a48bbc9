/**
 * A token server for tests of Bearer auth against the real distribution registry.
 *
 * distribution 2.8 (Debian's docker-registry) verifies a token's signing key in this
 * order: an `x5c` certificate chain in the JWT header that verifies up to a certificate in
 * `rootcertbundle`; else a `jwk` header (trusted only if it carries its own x5c or its
 * libtrust key ID is a root's); else a `kid` that must equal the libtrust fingerprint of a
 * root's key. The simplest that works is `x5c` holding a self-signed certificate that is
 * also the whole root bundle (Go accepts a leaf that is itself a trusted root). Also, 2.8
 * unmarshals `aud` as a single string: an array fails as a malformed token.
 */
import { createPrivateKey, createSign, randomUUID, X509Certificate, type KeyObject } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { exec } from './tools.js';

export interface TokenServerOptions {
  /** Users allowed every action they ask for. */
  users?: Record<string, string>;
  /** Anonymous requests get `pull` (else a token with no access, as Docker Hub does for private repos). */
  anonymousPull?: boolean;
  /** `expires_in` to report; omitted from the answer when null. */
  expiresIn?: number | null;
  /** Which JSON field carries the token. */
  tokenField?: 'token' | 'access_token' | 'both';
  service?: string;
  issuer?: string;
}

export interface TokenRequest {
  service: string | null;
  scopes: string[];
  user?: string;
  status: number;
}

export interface TokenServer {
  url: string;
  /** Every token request, in order. */
  requests: TokenRequest[];
  /** What `startUpstreamRegistry({ token })` needs. */
  registryAuth: { realm: string; service: string; issuer: string; rootCertBundle: string };
  stop(): Promise<void>;
}

const b64url = (data: Buffer | string) => Buffer.from(data).toString('base64url');

/** `repository:host:5000/name:pull,push` → type, name, actions; the name may contain `:`. */
function parseScope(scope: string): { type: string; name: string; actions: string[] } | undefined {
  const first = scope.indexOf(':');
  const last = scope.lastIndexOf(':');
  if (first < 0 || last === first) return undefined;
  return { type: scope.slice(0, first), name: scope.slice(first + 1, last), actions: scope.slice(last + 1).split(',').filter(Boolean) };
}

export async function startTokenServer(options: TokenServerOptions = {}): Promise<TokenServer> {
  const dir = await mkdtemp(path.join(tmpdir(), 'kontain-token-'));
  const keyPath = path.join(dir, 'key.pem');
  const certPath = path.join(dir, 'cert.pem');
  // node:crypto can read certificates but not make them; openssl makes a self-signed one.
  await exec('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyPath, '-out', certPath, '-days', '2', '-subj', '/CN=kontain test token signer']);
  const key: KeyObject = createPrivateKey(await readFile(keyPath));
  const certificate = new X509Certificate(await readFile(certPath));
  const service = options.service ?? 'kontain-test-registry';
  const issuer = options.issuer ?? 'kontain-test-issuer';
  const requests: TokenRequest[] = [];

  function sign(claims: Record<string, unknown>): string {
    const header = { typ: 'JWT', alg: 'RS256', x5c: [certificate.raw.toString('base64')] };
    const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
    const signature = createSign('RSA-SHA256').update(input).sign(key);
    return `${input}.${b64url(signature)}`;
  }

  function handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://token.invalid');
    const scopes = url.searchParams.getAll('scope').flatMap((s) => s.split(' ')).filter(Boolean);
    const record: TokenRequest = { service: url.searchParams.get('service'), scopes, status: 200 };
    requests.push(record);
    const reply = (status: number, body: unknown) => {
      record.status = status;
      const text = JSON.stringify(body);
      res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
      res.end(text);
    };
    if (url.pathname !== '/token') return reply(404, { details: 'not found' });

    let user: string | undefined;
    const authorization = req.headers.authorization;
    if (authorization) {
      const m = /^Basic (.+)$/i.exec(authorization);
      const decoded = m ? Buffer.from(m[1]!, 'base64').toString('utf8') : '';
      const colon = decoded.indexOf(':');
      const name = decoded.slice(0, colon);
      if (colon < 0 || options.users?.[name] !== decoded.slice(colon + 1)) return reply(401, { details: 'incorrect username or password' });
      user = name;
      record.user = user;
    }

    const access = scopes.flatMap((scope) => {
      const parsed = parseScope(scope);
      if (!parsed) return [];
      const actions = user ? parsed.actions : options.anonymousPull ? parsed.actions.filter((a) => a === 'pull') : [];
      return actions.length ? [{ type: parsed.type, name: parsed.name, actions }] : [];
    });
    const now = Math.floor(Date.now() / 1000);
    const expiresIn = options.expiresIn === undefined ? 300 : options.expiresIn;
    const token = sign({
      iss: issuer,
      sub: user ?? '',
      aud: service,
      exp: now + (expiresIn ?? 60),
      nbf: now - 1,
      iat: now,
      jti: randomUUID(),
      access,
    });
    const field = options.tokenField ?? 'token';
    reply(200, {
      ...(field !== 'access_token' ? { token } : {}),
      ...(field !== 'token' ? { access_token: token } : {}),
      ...(expiresIn === null ? {} : { expires_in: expiresIn }),
      issued_at: new Date(now * 1000).toISOString(),
    });
  }

  const server = createServer(handle);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    requests,
    registryAuth: { realm: `${url}/token`, service, issuer, rootCertBundle: certPath },
    stop: async () => {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      await rm(dir, { recursive: true, force: true });
    },
  };
}
