/**
 * Registry credentials the way skopeo finds them: `--authfile` alone when given; else
 * containers' auth.json (`$REGISTRY_AUTH_FILE`, else `$XDG_RUNTIME_DIR/containers/auth.json`),
 * then `$XDG_CONFIG_HOME/containers/auth.json`, then docker's config.json. The first file
 * with an entry for the registry wins. The files share one format (`auths`).
 */
import { homedir } from 'node:os';
import path from 'node:path';
import { DockerConfigCredentials, defaultDockerConfigPath, type Credentials } from '../remote/credentials.js';

export interface CredentialSource {
  get(registry: string): Promise<Credentials | undefined>;
}

export function authFilePaths(authfile: string | undefined, env: NodeJS.ProcessEnv = process.env): string[] {
  if (authfile) return [authfile];
  const paths: string[] = [];
  if (env.REGISTRY_AUTH_FILE) paths.push(env.REGISTRY_AUTH_FILE);
  else if (env.XDG_RUNTIME_DIR) paths.push(path.join(env.XDG_RUNTIME_DIR, 'containers', 'auth.json'));
  paths.push(path.join(env.XDG_CONFIG_HOME || path.join(homedir(), '.config'), 'containers', 'auth.json'));
  paths.push(defaultDockerConfigPath(env));
  return paths;
}

export class AuthFileChain implements CredentialSource {
  private readonly files: DockerConfigCredentials[];

  constructor(paths: string[]) {
    this.files = paths.map((p) => new DockerConfigCredentials(p));
  }

  async get(registry: string): Promise<Credentials | undefined> {
    for (const file of this.files) {
      const found = await file.get(registry);
      if (found) return found;
    }
    return undefined;
  }
}

/** `--no-creds`: every registry anonymously. */
export const NO_CREDENTIALS: CredentialSource = { get: async () => undefined };
