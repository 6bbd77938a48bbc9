import type { Generator, GeneratorContext } from './generator.js';
import { RandomGenerator } from './random.js';
import { MirrorGenerator } from './mirror.js';
import { FlattenGenerator } from './flatten.js';
import { EstargzGenerator } from './estargz.js';
import { WaitGenerator } from './wait.js';
import { ApkoGenerator } from './apko.js';
import { KoGenerator } from './ko.js';
import { KanikoGenerator } from './kaniko.js';
import { BuildpackGenerator } from './buildpack.js';
import { createBuildFacility, createBuildExecutor } from '../builds/index.js';
import { GitSource } from '../git/source.js';
import { StaticGenerator } from './static.js';
import { NixGenerator } from './nix.js';
import { RegistryClient } from '../remote/client.js';
import { VizHost } from '../viz/host.js';
import { RegistryImageSource } from '../viz/source.js';
import { GraphRenderer } from '../viz/render.js';

/** Every host kontain serves, by service name. Add a host here. */
export function createGenerators(given: GeneratorContext): Map<string, Generator> {
  // One slow-work facility for every building host: it owns the `build` task.
  const builds = given.builds ?? createBuildFacility(given);
  const context = { ...given, builds };
  // One client for every host that reads upstream registries, so tokens are shared.
  const client = new RegistryClient({
    insecureRegistries: context.config.insecureRegistries,
    dockerConfigPath: context.config.dockerConfigPath,
    userAgent: 'kontain',
    logger: context.log,
    timeouts: {
      stallMs: context.config.upstreamStallMs,
      minBytesPerSecond: context.config.upstreamMinRate,
      rateWindowMs: context.config.upstreamRateWindowMs,
    },
  });
  const git = new GitSource({
    base: context.config.builds.gitBase,
    insecureRegistries: context.config.insecureRegistries,
    workDir: context.config.builds.workDir,
    maxSourceBytes: context.config.builds.maxSourceBytes,
    lsRemoteTimeoutMs: context.config.builds.gitTimeoutSeconds * 1000,
    fetchTimeoutMs: context.config.builds.gitTimeoutSeconds * 10_000,
  });
  const executor = createBuildExecutor(context);
  const generators: Generator[] = [
    new RandomGenerator(context),
    new MirrorGenerator(context, client, { staleIfError: context.config.mirrorStaleIfError }),
    new FlattenGenerator(context, client),
    new EstargzGenerator(context, client),
    new WaitGenerator(context),
    new KoGenerator(context, client),
    new ApkoGenerator(context),
    new KanikoGenerator(context, client, executor, builds, git),
    new BuildpackGenerator(context, client, executor, builds, git),
    new NixGenerator(context),
    new VizHost(
      new RegistryImageSource(client),
      new GraphRenderer({ timeoutMs: context.config.vizRenderTimeoutSeconds * 1000, maxRenders: context.config.vizMaxRenders, log: context.log }),
      context.config.domain,
    ),
  ];
  if (context.config.staticRoot) generators.push(new StaticGenerator({ root: context.config.staticRoot, prefix: context.config.staticPrefix }));
  return new Map(generators.map((g) => [g.service, g]));
}
