import type { Generator, GeneratorContext } from './generator.js';
import { RandomGenerator } from './random.js';

/** Every host kontain serves, by service name. Add a host here. */
export function createGenerators(context: GeneratorContext): Map<string, Generator> {
  const generators: Generator[] = [new RandomGenerator(context)];
  return new Map(generators.map((g) => [g.service, g]));
}
