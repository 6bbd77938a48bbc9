import { createHash, timingSafeEqual } from 'node:crypto';
import express, { type NextFunction, type Request, type Response, type Router } from 'express';
import { OAuth2Client } from 'google-auth-library';
import type { Logger } from 'pino';
import { RegistryError, type ErrorCodeName } from '../registry/errors.js';
import { TASK_SECRET_HEADER } from './cloud.js';
import { UnknownTask, type TaskQueue } from './queue.js';

/** The claims of a verified ID token that the endpoint looks at. */
export interface VerifiedToken {
  email?: string;
  email_verified?: boolean;
}

/** Checks an ID token's signature, expiry, issuer and audience; rejects when any is wrong. */
export type IdTokenVerifier = (token: string, audience: string) => Promise<VerifiedToken>;

const GOOGLE_ISSUERS = ['accounts.google.com', 'https://accounts.google.com'];

/**
 * Verifies Google-signed ID tokens with google-auth-library. With `certs` (key id → PEM
 * public key or certificate) the signing keys are those instead of Google's published
 * ones; everything else (signature, expiry, issuer, audience) is checked the same way.
 * Tests use it to trust a key of their own.
 */
export function googleIdTokenVerifier(certs?: Record<string, string>): IdTokenVerifier {
  const client = new OAuth2Client();
  return async (token, audience) => {
    const ticket = certs
      ? await client.verifySignedJwtWithCertsAsync(token, certs, audience, GOOGLE_ISSUERS)
      : await client.verifyIdToken({ idToken: token, audience });
    return ticket.getPayload() ?? {};
  };
}

export interface TaskEndpointOptions {
  tasks: TaskQueue;
  /** The audience the OIDC token must carry. */
  audience: string;
  /** The only identity whose tokens are accepted; without it no token is. */
  serviceAccount?: string;
  /** A shared secret accepted in X-Kontain-Task-Secret instead of a token. */
  secret?: string;
  verifier?: IdTokenVerifier;
  log: Logger;
}

/** Cloud Tasks bodies are at most 1 MB. */
const MAX_BODY = '1mb';

/**
 * `POST /_tasks/:name`: where Cloud Tasks delivers tasks. The caller must prove it is
 * Cloud Tasks: an ID token signed by Google for the configured service account and
 * audience (checking the email matters: anyone can get a Google-signed token with any
 * audience), or the shared secret. Missing proof is 401, wrong proof 403. The handler's
 * failure is a 500, which makes Cloud Tasks retry with its queue's backoff.
 */
export function taskEndpoint(options: TaskEndpointOptions): Router {
  const { tasks, audience, serviceAccount, secret, log } = options;
  const verify = options.verifier ?? googleIdTokenVerifier();
  const router = express.Router();

  // Credentials are checked before the body is read: strangers' bodies are not buffered.
  const checkCaller = (req: Request, res: Response, next: NextFunction) => {
    authenticate(req).then((refusal) => {
      if (!refusal) {
        next();
        return;
      }
      ((res.locals.log as Logger | undefined) ?? log).warn({ task: req.params.name, reason: refusal.message }, 'task call refused');
      if (refusal.status === 401) res.setHeader('WWW-Authenticate', 'Bearer');
      sendError(res, refusal);
    }, next);
  };

  router.post('/_tasks/:name', checkCaller, express.raw({ type: () => true, limit: MAX_BODY }), async (req: Request, res: Response) => {
    const name = req.params.name as string;
    const reqLog: Logger = (res.locals.log as Logger | undefined) ?? log;
    let payload: unknown;
    try {
      const body = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
      payload = body.length === 0 ? null : JSON.parse(body.toString('utf8'));
    } catch {
      sendError(res, new RegistryError('UNSUPPORTED', 'the task body is not JSON', { status: 400 }));
      return;
    }
    try {
      await tasks.run(name, payload);
    } catch (err) {
      if (err instanceof UnknownTask) {
        sendError(res, new RegistryError('NAME_UNKNOWN', err.message, { status: 404 }));
        return;
      }
      reqLog.error({ err, task: name }, `task ${name} failed; Cloud Tasks will retry it`);
      sendError(res, new RegistryError('UNKNOWN', `task ${name} failed; it will be retried`, { status: 500 }));
      return;
    }
    reqLog.info({ task: name, retry: req.headers['x-cloudtasks-taskretrycount'] }, `task ${name} done`);
    res.status(204).end();
  });

  /** Undefined when the caller is accepted, else the error to answer with. */
  async function authenticate(req: Request): Promise<RegistryError | undefined> {
    const presentedSecret = req.headers[TASK_SECRET_HEADER.toLowerCase()];
    if (typeof presentedSecret === 'string') {
      if (secret && sameSecret(presentedSecret, secret)) return undefined;
      // A token may still be good; remember the bad secret for the answer otherwise.
    }
    const authorization = req.headers.authorization;
    const bearer = authorization?.match(/^Bearer\s+(\S+)\s*$/i)?.[1];
    if (bearer) {
      if (!serviceAccount) return refuse('DENIED', 'this service accepts no ID tokens for tasks (KONTAIN_TASKS_SERVICE_ACCOUNT is not set)');
      let claims: VerifiedToken;
      try {
        claims = await verify(bearer, audience);
      } catch (err) {
        // The library's first clause ("Wrong recipient", "Token used too late"); the rest echoes the token.
        const reason = String((err as Error).message).split(/[:,]/)[0]!.slice(0, 100);
        return refuse('DENIED', `the ID token is not valid for this service (${reason})`);
      }
      if (claims.email !== serviceAccount || claims.email_verified === false) {
        return refuse('DENIED', `the ID token is for ${claims.email ?? 'no email'}, not the task service account`);
      }
      return undefined;
    }
    if (typeof presentedSecret === 'string' || authorization !== undefined) {
      return refuse('DENIED', 'the task credentials are not valid');
    }
    return refuse('UNAUTHORIZED', `task calls need an ID token (Authorization: Bearer) or the ${TASK_SECRET_HEADER} header`);
  }

  return router;
}

function refuse(code: ErrorCodeName, message: string): RegistryError {
  return new RegistryError(code, message);
}

/** Compares hashes so the time taken says nothing about how much of the secret matched. */
function sameSecret(presented: string, expected: string): boolean {
  const hash = (s: string) => createHash('sha256').update(s).digest();
  return timingSafeEqual(hash(presented), hash(expected));
}

function sendError(res: Response, error: RegistryError): void {
  const body = Buffer.from(JSON.stringify(error.toJSON()));
  res.status(error.status);
  res.setHeader('Content-Type', 'application/json');
  res.setHeader('Content-Length', body.length);
  res.end(body);
}
