/**
 * How a buildpack build runs, the same on this machine and in Cloud Build: a shell script
 * that makes a working container from the builder image with Debian's buildah (vfs
 * storage, no daemon), bind-mounts the app, a layers directory and the OCI layout
 * directory into it, and runs the builder's own lifecycle, `/cnb/lifecycle/creator`, as
 * the builder's build user. The creator exports to an OCI layout (Platform API ≥ 0.12,
 * experimental: `CNB_USE_LAYOUT`, `CNB_LAYOUT_DIR`), reading the run image from that
 * layout directory too, where kontain put it. kontain does not reimplement the lifecycle.
 *
 * The context directory of a buildpack build holds:
 *   app/                          the source at the commit (mounted at /workspace)
 *   layout/<registry>/<repo>/sha256/<hex>   the run image, as the platform spec maps a digest reference
 * and after a successful build:
 *   layout/kontain.invalid/build/latest     the exported image
 */
import path from 'node:path';
import type { BuildpackRecipe } from './executor.js';

/** The image name the creator exports; only its path in the layout directory matters. */
export const OUTPUT_IMAGE = 'kontain.invalid/build:latest';
/** Where, under the context, the exported OCI layout is. */
export const OUTPUT_LAYOUT = path.join('layout', 'kontain.invalid', 'build', 'latest');
export const APP_DIR = 'app';
export const LAYOUT_DIR = 'layout';

/**
 * The script. Inputs come as environment variables (`recipeEnv`); KONTAIN_CONTEXT and
 * KONTAIN_WORK default to the working directory and `$TMPDIR/kontain` (Cloud Build's
 * workspace and the step's scratch space). Its exit status is the creator's.
 */
export const BUILDPACK_SCRIPT = [
  'set -eu',
  'c="${KONTAIN_CONTEXT:-$PWD}"',
  'w="${KONTAIN_WORK:-${TMPDIR:-/tmp}/kontain}"',
  'mkdir -p "$w/layers" "$w/platform"',
  `printf '%s' "$KONTAIN_REGISTRIES_CONF" > "$w/registries.conf"`,
  // The builder is pinned by digest and was checked by kontain's own client.
  `printf '%s' '{"default":[{"type":"insecureAcceptAnything"}]}' > "$w/policy.json"`,
  'export CONTAINERS_REGISTRIES_CONF="$w/registries.conf"',
  'b() { "${KONTAIN_BUILDAH:-buildah}" --root "$w/storage" --runroot "$w/run" --storage-driver vfs "$@"; }',
  'echo "kontain: pulling the builder $KONTAIN_BUILDER"',
  'ctr=$(b from --quiet --pull=always --signature-policy "$w/policy.json" ${KONTAIN_AUTHFILE:+--authfile "$KONTAIN_AUTHFILE"} "$KONTAIN_BUILDER")',
  // The lifecycle runs as the build user, who must own what it writes.
  `chown -R "$KONTAIN_UID:$KONTAIN_GID" "$c/${APP_DIR}" "$c/${LAYOUT_DIR}" "$w/layers" "$w/platform"`,
  'echo "kontain: running /cnb/lifecycle/creator (Platform API $KONTAIN_PLATFORM_API, run image $KONTAIN_RUN_IMAGE)"',
  'set +e',
  [
    'b run --isolation chroot --user "$KONTAIN_UID:$KONTAIN_GID"',
    `-v "$c/${APP_DIR}:/workspace" -v "$w/layers:/layers" -v "$w/platform:/platform" -v "$c/${LAYOUT_DIR}:/kontain/layout"`,
    '--env CNB_PLATFORM_API="$KONTAIN_PLATFORM_API" --env CNB_EXPERIMENTAL_MODE=warn --env CNB_USE_LAYOUT=true --env CNB_LAYOUT_DIR=/kontain/layout',
    '${KONTAIN_TIMESTAMP:+--env SOURCE_DATE_EPOCH="$KONTAIN_TIMESTAMP"}',
    '"$ctr" -- /cnb/lifecycle/creator -app /workspace -layers /layers -platform /platform -run-image "$KONTAIN_RUN_IMAGE"',
    OUTPUT_IMAGE,
  ].join(' '),
  'code=$?',
  'set -e',
  'if [ "$code" -ne 0 ]; then echo "kontain: the lifecycle\'s creator exited with status $code"; exit "$code"; fi',
].join('\n');

/** The script's inputs for a recipe. */
export function recipeEnv(recipe: BuildpackRecipe, registriesConf: string): Record<string, string> {
  return {
    KONTAIN_BUILDER: recipe.builder,
    KONTAIN_RUN_IMAGE: recipe.runImage,
    KONTAIN_PLATFORM_API: recipe.platformApi,
    KONTAIN_UID: String(recipe.uid),
    KONTAIN_GID: String(recipe.gid),
    KONTAIN_REGISTRIES_CONF: registriesConf,
    ...(recipe.timestamp !== undefined ? { KONTAIN_TIMESTAMP: String(recipe.timestamp) } : {}),
  };
}

/**
 * What the creator's exit status means (Platform API: 20–29 detection, 30–39 analysis,
 * 40–49 restore, 50–59 build, 60–69 export, 11/12 API incompatibility).
 */
export function creatorFailure(code: number): string {
  if (code === 20) return 'no buildpack group passed detection: no buildpack of the builder recognises this source';
  if (code === 21) return 'buildpack detection failed with an error';
  if (code === 11) return "the builder's lifecycle does not support the Platform API kontain asked for";
  if (code === 12) return "a buildpack's API is not supported by the builder's lifecycle";
  if (code >= 20 && code < 30) return `buildpack detection failed (creator exit status ${code})`;
  if (code >= 50 && code < 60) return `a buildpack failed to build (creator exit status ${code})`;
  if (code >= 60 && code < 70) return `exporting the image failed (creator exit status ${code})`;
  return `the lifecycle's creator failed (exit status ${code})`;
}
