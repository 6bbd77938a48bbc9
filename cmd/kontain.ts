#!/usr/bin/env node
// Commands load their modules when run: the proxies start per client and must start fast.
import { ConfigError, loadConfig, staticPrefix } from '../src/config.js';

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
  const { createLogger } = await import('../src/server/logging.js');
  const log = createLogger(config.logLevel);
  switch (command) {
    case 'serve': {
      const { startServer } = await import('../src/server/serve.js');
      const running = await startServer(config, log);
      await new Promise<void>((resolve) => {
        const stop = (signal: string) => {
          log.info({ signal }, 'shutting down: finishing in-flight requests');
          running.close().then(resolve, resolve);
        };
        process.once('SIGTERM', () => stop('SIGTERM'));
        process.once('SIGINT', () => stop('SIGINT'));
      });
      log.info('stopped');
      return 0;
    }
    case 'gc': {
      const [{ default: pino }, { ContentStore }, { collectGarbage }, { createBackend }] = await Promise.all([
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
        dryRun: flags.includes('--dry-run'),
        log: createLogger(config.logLevel, pino.destination(2)),
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
  process.stdout.write(await exportNginx({ root, ...options }));
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
