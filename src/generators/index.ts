import type { GeneratorContext, Host } from './generator.js';
import { WaitGenerator } from './wait.js';
import { createBuildFacility } from '../builds/index.js';
import { RegistryClient } from '../remote/client.js';
import { VIZ_SERVICE, vizPageURL } from '../viz/host.js';
import { LazyHost, type LazyHostOptions } from './lazy.js';
import type { BuildExecutor } from '../builds/executor.js';
import type { GitSource } from '../git/source.js';

/**
 * Every host kontain serves, by service name. Add a host here.
 *
 * Each host's module is imported on its first request (a dynamic import, its own chunk in
 * the bundle), so a cold instance evaluates only what its first pulls need. A building
 * host's runner is registered by its module; the facility is told how to load it, for a
 * `build` task that arrives before the host's first pull here.
 */
export function createGenerators(given: GeneratorContext): Map<string, Host> {
  // One slow-work facility for every building host: it owns the `build` task.
  const builds = given.builds ?? createBuildFacility(given);
  const context = { ...given, builds };
  const { config } = context;
  // One client for every host that reads upstream registries, so tokens are shared.
  const client = new RegistryClient({
    insecureRegistries: config.insecureRegistries,
    dockerConfigPath: config.dockerConfigPath,
    userAgent: 'kontain',
    logger: context.log,
    timeouts: {
      stallMs: config.upstreamStallMs,
      minBytesPerSecond: config.upstreamMinRate,
      rateWindowMs: config.upstreamRateWindowMs,
    },
  });
  // The git source and build executor of the hosts that build from a repository (kaniko,
  // buildpack): made once, on the first such host's first request.
  let sourceBuildParts: Promise<{ git: GitSource; executor: BuildExecutor }> | undefined;
  const sourceBuilds = () =>
    (sourceBuildParts ??= Promise.all([import('../builds/executors.js'), import('../git/source.js')]).then(([{ createBuildExecutor }, { GitSource }]) => ({
      executor: createBuildExecutor(context),
      git: new GitSource({
        base: config.builds.gitBase,
        insecureRegistries: config.insecureRegistries,
        workDir: config.builds.workDir,
        maxSourceBytes: config.builds.maxSourceBytes,
        lsRemoteTimeoutMs: config.builds.gitTimeoutSeconds * 1000,
        fetchTimeoutMs: config.builds.gitTimeoutSeconds * 10_000,
      }),
    })));

  // Made at start: it registers the `wait` task handler, which a queued task may need before any pull.
  const wait = new WaitGenerator(context);

  const hosts: LazyHostOptions[] = [
    {
      service: 'random',
      summary: 'A new image of random layers on every pull: N layers of SIZE random bytes each, from a tag like 4x100 (default: one 10 MB layer).',
      examples: ['random/x:4x100', 'random/busybox:3x10mb'],
      load: async () => new (await import('./random.js')).RandomGenerator(context),
    },
    {
      service: 'mirror',
      summary: 'An upstream image, pulled through and kept: busybox means docker.io/library/busybox; other registries by host name.',
      examples: ['mirror/busybox', 'mirror/ghcr.io/homebrew/core/hello:latest'],
      load: async () => new (await import('./mirror.js')).MirrorGenerator(context, client, { staleIfError: config.mirrorStaleIfError }),
    },
    {
      service: 'flatten',
      summary: 'An upstream image squashed into a single layer holding the same filesystem (whiteouts applied), with its runtime config kept.',
      examples: ['flatten/busybox', 'flatten/ghcr.io/homebrew/core/hello:latest'],
      load: async () => new (await import('./flatten.js')).FlattenGenerator(context, client),
    },
    {
      service: 'estargz',
      summary:
        'An upstream image with every layer rewritten as eStargz (lazy-pullable gzip with a table of contents); it still pulls as an ordinary image anywhere.',
      examples: ['estargz/busybox', 'estargz/ghcr.io/homebrew/core/hello:latest'],
      load: async () => new (await import('./estargz.js')).EstargzGenerator(context, client),
    },
    {
      service: 'wait',
      summary:
        'An image that appears only a while after you first ask for it: the first pull of wait/NAME:DURATION (a Go duration such as 30s or 1m30s, at most 1h; latest is 10s) starts the clock and says when to come back; after that you get 10 layers of 100 random bytes.',
      examples: ['wait/x:30s', 'wait/hello:1m30s'],
      load: async () => wait,
    },
    {
      service: 'ko',
      summary:
        'A Go program built from its module at the requested version (from the Go module proxy) for every platform of the base image, laid out as ko does.',
      examples: ['ko/github.com/google/ko:latest', 'ko/golang.org/x/example/hello:latest'],
      load: async () => new (await import('./ko.js')).KoGenerator(context, client),
    },
    {
      service: 'apko',
      summary:
        'An image holding APK packages and their dependencies (Wolfi by default), built when pulled, or built from an apko configuration YAML at an HTTPS URL.',
      examples: ['apko/busybox:latest', 'apko/url/raw.githubusercontent.com/chainguard-dev/apko/main/examples/wolfi-base.yaml:latest'],
      load: async () => new (await import('./apko.js')).ApkoGenerator(context),
    },
    {
      service: 'kaniko',
      summary:
        "The image a git repository's Dockerfile builds at a branch, tag or commit (kaniko/OWNER/REPO[/DIR]:REV), rebuilt when the commit or a base image moves.",
      examples: ['kaniko/owner/repo:main', 'kaniko/owner/repo/subdir:v1.2.3'],
      load: async () => {
        const [{ KanikoGenerator }, { git, executor }] = await Promise.all([import('./kaniko.js'), sourceBuilds()]);
        return new KanikoGenerator(context, client, executor, builds, git);
      },
    },
    {
      service: 'buildpack',
      summary: 'The image Cloud Native Buildpacks build from a git repository at a branch, tag or commit (buildpack/OWNER/REPO[/DIR]:REV), with the configured builder.',
      examples: ['buildpack/owner/repo:main', 'buildpack/owner/repo/subdir:v1.2.3'],
      load: async () => {
        const [{ BuildpackGenerator }, { git, executor }] = await Promise.all([import('./buildpack.js'), sourceBuilds()]);
        return new BuildpackGenerator(context, client, executor, builds, git);
      },
    },
    {
      service: 'nix',
      summary:
        "An image of Nix packages from the operator's package set (nix/<pkg>/<pkg>, as Nixery names them), or of an output of the operator's flake (nix/flake--<attr>:<git ref>), built when pulled.",
      examples: ['nix/shell/git:latest', 'nix/flake--default:main'],
      load: async () => new (await import('./nix.js')).NixGenerator(context),
    },
    {
      service: VIZ_SERVICE,
      summary: 'Not a registry but a web page that draws which layers a set of images share, as a graph.',
      examples: [],
      pageURL: vizPageURL(config.domain),
      load: async () => {
        const [{ VizHost }, { RegistryImageSource }, { GraphRenderer }] = await Promise.all([
          import('../viz/host.js'),
          import('../viz/source.js'),
          import('../viz/render.js'),
        ]);
        const renderer = new GraphRenderer({ timeoutMs: config.vizRenderTimeoutSeconds * 1000, maxRenders: config.vizMaxRenders, log: context.log });
        return new VizHost(new RegistryImageSource(client), renderer, config.domain);
      },
    },
  ];
  if (config.staticRoot) {
    const { staticRoot: root, staticPrefix: prefix } = config;
    hosts.push({
      service: 'static',
      summary: 'images from a directory of skopeo dir: copies and OCI layouts, served as they are on disk',
      examples: [`static/${prefix ? `${prefix}/` : ''}<name>:<tag>`],
      storeless: true,
      load: async () => new (await import('./static.js')).StaticGenerator({ root, prefix }),
    });
  }
  const lazy = hosts.map((options) => new LazyHost(options));
  // A `build` task can arrive before the first pull of its host here: loading the host registers its runner.
  for (const host of lazy) builds.registerLoader(host.service, () => host.load());
  return new Map(lazy.map((host) => [host.service, host]));
}

