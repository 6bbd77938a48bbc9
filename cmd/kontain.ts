#!/usr/bin/env node
// Commands load their modules when run: the proxies start per client and must start fast.
import { ConfigError, loadConfig } from '../src/config.js';

const USAGE = `usage: kontain <command>

commands:
  serve    serve the registry on $PORT (default 8080)
  gc       delete expired pointers and unreachable objects older than
           $KONTAIN_GC_GRACE once, print a JSON report (--dry-run: delete nothing)
  proxy REF
           serve one image over HTTP/1.1 on --sockfd N (or stdin/stdout)
  experimental-image-proxy
           skopeo's JSON image-proxy protocol on a SOCK_SEQPACKET --sockfd N (or stdin)

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

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
