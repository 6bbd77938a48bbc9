/**
 * Headless Chromium for page tests: Debian's `chromium` (test/setup.sh installs it) driven
 * by playwright-core, which downloads no browser of its own. Switches keep it off the
 * network: the tests only talk to servers on 127.0.0.1.
 */
import { existsSync } from 'node:fs';
import { chromium, type Browser } from 'playwright-core';

export const CHROMIUM_PATH = process.env.KONTAIN_TEST_CHROMIUM ?? '/usr/bin/chromium';

export async function launchBrowser(): Promise<Browser> {
  if (!existsSync(CHROMIUM_PATH)) {
    throw new Error(`no Chromium at ${CHROMIUM_PATH}: run test/setup.sh as root, or apt-get install chromium`);
  }
  // playwright gives every launch a fresh temporary profile and removes it on close.
  return chromium.launch({
    executablePath: CHROMIUM_PATH,
    timeout: 60_000,
    args: [
      '--headless',
      '--no-sandbox', // tests run as root in containers, where the sandbox cannot start
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}
