/**
 * The command lines of `kontain proxy` and `kontain experimental-image-proxy`. Options
 * follow skopeo's names so a program that runs skopeo can run kontain instead.
 */
import pino from 'pino';
import { ConfigError, loadConfig } from '../config.js';
import type { Platform } from '../oci/types.js';
import { parsePlatform } from '../registry/platform.js';
import { createLogger } from '../server/logging.js';
import { AuthFileChain, NO_CREDENTIALS, authFilePaths } from './credentials.js';
import { ImageOpener } from './open-image.js';
import { hostPlatform } from './proxy-image.js';
import { KontainHosts } from './sources/kontain.js';

export const PROXY_USAGE = `usage: kontain proxy [--sockfd N] [--platform os/arch[/variant]] [--authfile PATH] [--no-creds] [--tls-verify=false] REF
       kontain experimental-image-proxy [--sockfd N] [--platform os/arch[/variant]] [--authfile PATH] [--no-creds] [--tls-verify=false]

REF: docker://HOST/NAME[:TAG|@DIGEST], oci:DIR[:TAG], dir:PATH, or a kontain host image (random/x:2x10)`;

export class UsageError extends Error {}

interface ProxyFlags {
  sockfd?: number;
  platform: Platform;
  authfile?: string;
  noCreds: boolean;
  tlsVerify: boolean;
  debug: boolean;
  positional: string[];
}

export function parseFlags(argv: string[]): ProxyFlags {
  const flags: ProxyFlags = { platform: hostPlatform(), noCreds: false, tlsVerify: true, debug: false, positional: [] };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const eq = arg.indexOf('=');
    const [name, inline] = arg.startsWith('--') && eq > 0 ? [arg.slice(0, eq), arg.slice(eq + 1)] : [arg, undefined];
    const value = () => {
      const v = inline ?? argv[++i];
      if (v === undefined) throw new UsageError(`${name} needs a value`);
      return v;
    };
    switch (name) {
      case '--sockfd': {
        const v = value();
        if (!/^\d+$/.test(v)) throw new UsageError(`--sockfd ${JSON.stringify(v)} is not a file descriptor number`);
        flags.sockfd = Number(v);
        break;
      }
      case '--platform': {
        const v = value();
        const platform = parsePlatform(v);
        if (!platform) throw new UsageError(`--platform ${JSON.stringify(v)} is not os/arch[/variant]`);
        flags.platform = platform;
        break;
      }
      case '--authfile':
        flags.authfile = value();
        break;
      case '--no-creds':
        flags.noCreds = true;
        break;
      case '--tls-verify': {
        const v = inline ?? 'true';
        if (v !== 'true' && v !== 'false') throw new UsageError(`--tls-verify=${v}: use true or false`);
        flags.tlsVerify = v === 'true';
        break;
      }
      case '--debug':
        flags.debug = true;
        break;
      default:
        if (arg.startsWith('-')) throw new UsageError(`unknown option ${arg}`);
        flags.positional.push(arg);
    }
  }
  return flags;
}

function setUp(flags: ProxyFlags) {
  const config = loadConfig();
  // stdout may be the protocol's channel: logs go to stderr.
  const log = createLogger(flags.debug ? 'debug' : config.logLevel, pino.destination(2));
  const credentials = flags.noCreds ? NO_CREDENTIALS : new AuthFileChain(authFilePaths(flags.authfile));
  const opener = new ImageOpener({ credentials, insecureRegistries: config.insecureRegistries, tlsVerify: flags.tlsVerify, hosts: new KontainHosts(config, log), log });
  return { log, opener };
}

async function guarded(command: string, run: () => Promise<number>): Promise<number> {
  try {
    return await run();
  } catch (err) {
    if (err instanceof UsageError || err instanceof ConfigError) {
      console.error(`kontain ${command}: ${err.message}\n\n${PROXY_USAGE}`);
      return 2;
    }
    throw err;
  }
}

export function runHttpProxy(argv: string[]): Promise<number> {
  return guarded('proxy', async () => {
    const flags = parseFlags(argv);
    if (flags.positional.length !== 1) throw new UsageError('name exactly one image reference');
    const { log, opener } = setUp(flags);
    // Each command loads only its own protocol: a proxy starts once per client, and its start is part of every pull.
    const [{ Socket }, { Duplex }, { HttpProxy }] = await Promise.all([import('node:net'), import('node:stream'), import('./http-proxy.js')]);
    const connection = flags.sockfd !== undefined ? new Socket({ fd: flags.sockfd, readable: true, writable: true }) : Duplex.from({ readable: process.stdin, writable: process.stdout });
    try {
      return await new HttpProxy({ reference: flags.positional[0]!, opener, platform: flags.platform, log }).serve(connection);
    } finally {
      opener.close();
    }
  });
}

export function runJsonProxy(argv: string[]): Promise<number> {
  return guarded('experimental-image-proxy', async () => {
    const flags = parseFlags(argv);
    if (flags.positional.length !== 0) throw new UsageError('takes no image reference: the client opens images with OpenImage');
    const { log, opener } = setUp(flags);
    const [{ JsonProxy }, { SeqpacketSocket }] = await Promise.all([import('./json-proxy.js'), import('./native.js')]);
    try {
      await new JsonProxy({ opener, platform: flags.platform, log }).serve(new SeqpacketSocket(flags.sockfd ?? 0));
      return 0;
    } finally {
      opener.close();
    }
  });
}
