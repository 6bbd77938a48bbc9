#!/usr/bin/env node
// Commands load their modules when run: the proxies start per client and must start fast.
import { ConfigError, loadConfig, staticPrefix } from '../src/config.js';
import { StartupError } from '../src/server/startup-error.js';
import type { Logger } from 'pino';
import type { RunningServer } from '../src/server/serve.js';

const USAGE = `usage: kontain <command>

commands:
  serve    serve the registry on $PORT (default 8080)
  gc       delete expired pointers and unreachable objects older than
           $KONTAIN_GC_GRACE once, print a JSON report (--dry-run: delete nothing)
  proxy REF
           serve one image over HTTP/1.1 on --sockfd N (or stdin/stdout)
  experimental-image-proxy
           skopeo's JSON image-proxy protocol on a SOCK_SEQPACKET --sockfd N (or stdin)
  export nginx [--name-prefix P] [--server-root PATH] ROOT
           print nginx locations (to include inside a server {} block) that
           serve the static tree ROOT as the static host does

Configuration is read from the environment; the README lists every variable.`;

async function main(argv: string[]): Promise<number> {
  const command = argv[0] ?? 'serve';
  if (command === '-h' || command === '--help' || command === 'help') {
    console.log(USAGE);
    return 0;
  }
  // The proxies read their own flags and configuration (their stdout may be the protocol).
  if (command === 'proxy') return (await import('../src/proxy/cli.js')).runHttpProxy(argv.slice(1));
  if (command === 'experimental-image-proxy') return (await import('../src/proxy/cli.js')).runJsonProxy(argv.slice(1));
  if (command === 'export') return exportCommand(argv.slice(1));
  let config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(`kontain: ${err.message}`);
      return 2;
    }
    throw err;
  }
  const { configuredSecrets, createLogger } = await import('../src/server/logging.js');
  const log = createLogger(config.logLevel, undefined, configuredSecrets(config));
  switch (command) {
    case 'serve': {
      const { startServer } = await import('../src/server/serve.js');
      // A closed stdout (the reader of a pipe gone) must neither crash nor hold up the
      // server: its write errors are dropped (pino's own stream does the same for the log).
      process.stdout.on('error', () => undefined);
      // Listening for signals from the start: one that arrives while the server is still
      // starting stops it as soon as it is up, instead of killing it mid-start.
      const signal = new Promise<string>((resolve) => {
        process.once('SIGTERM', () => resolve('SIGTERM'));
        process.once('SIGINT', () => resolve('SIGINT'));
      });
      const running = await startServer(config, log);
      return shutDown(running, log, await signal);
    }
    case 'gc': {
      const [{ default: pino }, { ContentStore }, { collectGarbage, buildLifetimes }, { createBackend }] = await Promise.all([
        import('pino'),
        import('../src/content/store.js'),
        import('../src/content/gc.js'),
        import('../src/storage/index.js'),
      ]);
      const flags = argv.slice(1);
      const unknown = flags.filter((f) => f !== '--dry-run');
      if (unknown.length > 0) {
        console.error(`kontain gc: unknown argument ${JSON.stringify(unknown[0])}\n\n${USAGE}`);
        return 2;
      }
      // The report goes to stdout; log lines go to stderr so they do not mix with it.
      const store = new ContentStore(await createBackend(config), { pointerTTLms: config.ttlSeconds * 1000 });
      const report = await collectGarbage(store, {
        graceMs: config.gcGraceSeconds * 1000,
        ...buildLifetimes(config),
        dryRun: flags.includes('--dry-run'),
        log: createLogger(config.logLevel, pino.destination(2), configuredSecrets(config)),
      });
      console.log(JSON.stringify(report, null, 2));
      return 0;
    }
    default:
      console.error(`kontain: unknown command ${JSON.stringify(command)}\n\n${USAGE}`);
      return 2;
  }
}

async function exportCommand(args: string[]): Promise<number> {
  const usage = (why: string) => {
    console.error(`kontain export: ${why}\n\n${USAGE}`);
    return 2;
  };
  if (args[0] !== 'nginx') return usage(`unknown export format ${JSON.stringify(args[0] ?? '')} (only nginx)`);
  const options: { namePrefix?: string; serverRoot?: string } = {};
  const positional: string[] = [];
  for (let i = 1; i < args.length; i++) {
    const arg = args[i]!;
    const [flag, inline] = arg.startsWith('--') && arg.includes('=') ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)] : [arg, undefined];
    if (flag === '--name-prefix' || flag === '--server-root') {
      const value = inline ?? args[++i];
      if (value === undefined) return usage(`${flag} needs a value`);
      if (flag === '--name-prefix') options.namePrefix = value;
      else options.serverRoot = value;
    } else if (arg.startsWith('-')) {
      return usage(`unknown argument ${JSON.stringify(arg)}`);
    } else {
      positional.push(arg);
    }
  }
  if (positional.length !== 1) return usage('give exactly one ROOT directory');
  const root = positional[0]!;
  if (options.serverRoot === undefined && root.includes('$')) return usage('ROOT contains $, which nginx reads as a variable: give --server-root');
  try {
    options.namePrefix = staticPrefix(options.namePrefix, '--name-prefix');
  } catch (err) {
    if (err instanceof ConfigError) return usage(err.message);
    throw err;
  }
  const [{ stat }, { exportNginx }] = await Promise.all([import('node:fs/promises'), import('../src/static/nginx.js')]);
  if (!(await stat(root).catch(() => undefined))?.isDirectory()) return usage(`${root} is not a directory`);
  // What the export leaves out (out of the root, too large, not matching its digest) is said on stderr.
  process.stdout.write(await exportNginx({ root, ...options, skipped: (problem) => console.error(`kontain export: left out: ${problem}`) }));
  return 0;
}

/** In-flight requests get this long after the signal; then their connections are closed (Cloud Run kills at 10 s). */
const SHUTDOWN_GRACE_MS = 9_000;
/** What closing may take after that (the task queue's running handlers, gc) before the process exits anyway. */
const SHUTDOWN_FORCE_MS = 5_000;

/**
 * Stops serving: in-flight requests finish, up to a deadline after which their connections
 * are cut; a second signal cuts them at once. Resolves with the exit code.
 */
async function shutDown(running: RunningServer, log: Logger, signal: string): Promise<number> {
  log.info({ signal }, 'shutting down: finishing in-flight requests');
  let forced = false;
  const force = () => {
    if (forced) return;
    forced = true;
    log.warn('shutdown: closing the connections still open');
    running.server.closeAllConnections();
  };
  const onSecondSignal = () => force();
  process.once('SIGTERM', onSecondSignal);
  process.once('SIGINT', onSecondSignal);
  const grace = setTimeout(force, SHUTDOWN_GRACE_MS);
  const closed = await Promise.race([
    running.close().then(() => true),
    new Promise<boolean>((resolve) => setTimeout(() => resolve(false), SHUTDOWN_GRACE_MS + SHUTDOWN_FORCE_MS).unref()),
  ]);
  clearTimeout(grace);
  if (!closed) {
    log.error('shutdown did not finish in time; exiting anyway');
    return 1;
  }
  log.info('stopped');
  return 0;
}

main(process.argv.slice(2)).then((code) => process.exit(code), (err: unknown) => {
  // Errors an operator can act on are one line; anything else keeps its stack.
  if (err instanceof StartupError || err instanceof ConfigError) {
    console.error(`kontain: ${err.message}`);
    process.exit(2);
  }
  console.error(err);
  process.exit(1);
});
