/** The upstream registry client: what the mirror, flatten and estargz hosts import. */
export { RegistryClient, MANIFEST_TYPES, type RegistryClientOptions, type Repository, type BlobOptions, type BlobStream, type TagList } from './client.js';
export { parseReference, formatReference, registryEndpointHost, isRepositoryName, InvalidReferenceError, DOCKER_HUB, type Reference } from './reference.js';
export { UpstreamError } from './errors.js';
export { UnsafeAddressError, parseInsecureRegistries, classifyAddress, type AddressClass } from './address-safety.js';
export { defaultDockerConfigPath } from './credentials.js';
