/**
 * Registry credentials from a docker `config.json` (`auths` only: credential helpers
 * and stores run external programs, which a server should not do on a user's behalf).
 */
import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import path from 'node:path';
import { DOCKER_HUB } from './reference.js';

export interface Credentials {
  username: string;
  password: string;
}

interface AuthEntry {
  auth?: string;
  username?: string;
  password?: string;
}

/** Keys docker itself writes for Docker Hub (`docker login` uses the v1 index URL). */
const DOCKER_HUB_ALIASES = ['docker.io', 'index.docker.io', 'registry-1.docker.io'];

/** Where docker looks: `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`. */
export function defaultDockerConfigPath(env: NodeJS.ProcessEnv = process.env): string {
  return path.join(env.DOCKER_CONFIG ?? path.join(homedir(), '.docker'), 'config.json');
}

/** `https://index.docker.io/v1/` → `index.docker.io`: auths keys may be URLs or bare hosts. */
function normaliseKey(key: string): string {
  return key
    .replace(/^[a-z]+:\/\//i, '')
    .replace(/\/.*$/, '')
    .toLowerCase();
}

function decode(entry: AuthEntry, file: string, key: string): Credentials | undefined {
  if (entry.auth) {
    const text = Buffer.from(entry.auth, 'base64').toString('utf8');
    const colon = text.indexOf(':');
    if (colon < 0) throw new Error(`${file}: auths[${JSON.stringify(key)}].auth is not base64 of "user:password"`);
    return { username: text.slice(0, colon), password: text.slice(colon + 1) };
  }
  if (entry.username && entry.password !== undefined) return { username: entry.username, password: entry.password };
  return undefined;
}

export class DockerConfigCredentials {
  private loaded?: Promise<Map<string, Credentials>>;

  /** Without a path there are no credentials: every registry is pulled anonymously. */
  constructor(private readonly file?: string) {}

  async get(registry: string): Promise<Credentials | undefined> {
    if (!this.file) return undefined;
    this.loaded ??= this.load(this.file);
    const table = await this.loaded;
    const host = registry.toLowerCase();
    if (host === DOCKER_HUB || DOCKER_HUB_ALIASES.includes(host)) {
      for (const alias of DOCKER_HUB_ALIASES) {
        const found = table.get(alias);
        if (found) return found;
      }
      return undefined;
    }
    return table.get(host);
  }

  private async load(file: string): Promise<Map<string, Credentials>> {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return new Map();
      throw err;
    }
    let parsed: { auths?: Record<string, AuthEntry> };
    try {
      parsed = JSON.parse(text) as typeof parsed;
    } catch (err) {
      throw new Error(`${file} is not valid JSON: ${(err as Error).message}`);
    }
    const table = new Map<string, Credentials>();
    for (const [key, entry] of Object.entries(parsed.auths ?? {})) {
      const credentials = entry && typeof entry === 'object' ? decode(entry, file, key) : undefined;
      // A bare host entry wins over a URL form of the same host.
      if (credentials && (!table.has(normaliseKey(key)) || !key.includes('/'))) table.set(normaliseKey(key), credentials);
    }
    return table;
  }
}
