import type { Config } from '../config.js';
import type { StorageBackend } from './backend.js';
import { FsBackend } from './fs.js';

/** The backend KONTAIN_STORE names: a directory, or gs://bucket[/prefix]. */
export async function createBackend(config: Config): Promise<StorageBackend> {
  if (config.store.kind === 'fs') return new FsBackend(config.store.directory);
  // Loaded only when used, so the embedded default never pays for the GCS client.
  const { GcsBackend } = await import('./gcs.js');
  return new GcsBackend({
    bucket: config.store.bucket,
    prefix: config.store.prefix,
    apiEndpoint: config.gcsEndpoint,
    urlMode: config.gcsUrlMode,
    signedUrlExpirySeconds: config.gcsSignedUrlExpirySeconds,
    projectId: config.project,
  });
}
