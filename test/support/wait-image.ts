import assert from 'node:assert/strict';
import { gunzipSync } from 'node:zlib';
import { skopeoCopy } from './tools.js';
import { OciLayout } from './oci-layout.js';

/**
 * Pulls `ref` from `address` with skopeo into `dir` and checks it is the wait host's
 * image: 10 gzip layers, each one regular file of 100 bytes. Returns the manifest digest.
 */
export async function pullWaitImage(address: string, ref: string, dir: string): Promise<string> {
  await skopeoCopy(`docker://${address}/${ref}`, `oci:${dir}:t`);
  const layout = new OciLayout(dir);
  const manifest = await layout.manifest('t');
  assert.equal(manifest.layers.length, 10);
  for (const layer of manifest.layers) {
    const tarBytes = gunzipSync(await layout.blob(layer.digest));
    // The size field of the first (and only) tar header, in octal.
    const size = parseInt(tarBytes.subarray(124, 136).toString('ascii').replace(/\0.*$/, '').trim(), 8);
    assert.equal(size, 100);
  }
  return layout.manifestDigest('t');
}
