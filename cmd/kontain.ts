#!/usr/bin/env node
import { ConfigError, loadConfig } from '../src/config.js';
import { createLogger } from '../src/server/logging.js';
import { startServer } from '../src/server/serve.js';

const USAGE = `usage: kontain <command>

commands:
  serve    serve the registry on $PORT (default 8080)

Configuration is read from the environment; the README lists every variable.`;

async function main(argv: string[]): Promise<number> {
  const command = argv[0] ?? 'serve';
  if (command === '-h' || command === '--help' || command === 'help') {
    console.log(USAGE);
    return 0;
  }
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
  const log = createLogger(config.logLevel);
  switch (command) {
    case 'serve': {
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
