/** Media types of the OCI image spec and of Docker schema 2. */
export const MediaType = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  ociLayerTar: 'application/vnd.oci.image.layer.v1.tar',
  ociLayerZstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  dockerLayerTar: 'application/vnd.docker.image.rootfs.diff.tar',
  dockerSchema1Signed: 'application/vnd.docker.distribution.manifest.v1+prettyjws',
  dockerSchema1: 'application/vnd.docker.distribution.manifest.v1+json',
} as const;

/** A family of media types: every image graph kontain writes uses one family throughout. */
export type FormatFamily = 'oci' | 'docker';

export const familyTypes = {
  oci: {
    manifest: MediaType.ociManifest,
    index: MediaType.ociIndex,
    config: MediaType.ociConfig,
    layerGzip: MediaType.ociLayerGzip,
  },
  docker: {
    manifest: MediaType.dockerManifest,
    index: MediaType.dockerManifestList,
    config: MediaType.dockerConfig,
    layerGzip: MediaType.dockerLayerGzip,
  },
} as const;

export function isIndexType(mediaType: string): boolean {
  return mediaType === MediaType.ociIndex || mediaType === MediaType.dockerManifestList;
}

export function isManifestType(mediaType: string): boolean {
  return mediaType === MediaType.ociManifest || mediaType === MediaType.dockerManifest;
}

export function familyOf(mediaType: string): FormatFamily {
  return mediaType.startsWith('application/vnd.docker.') ? 'docker' : 'oci';
}
