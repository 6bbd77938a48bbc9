/**
 * The Nix commands the nix host runs: evaluation of the package set, builds, closures,
 * flake metadata. Builds share a bounded number of slots; every command has the time limit.
 */
import { Semaphore } from '../util/semaphore.js';
import type { StorePathInfo } from './layering.js';
import { buildExpression, resolverExpression, type Resolution } from './packages.js';
import { runNix } from './run.js';

const FEATURES = ['--extra-experimental-features', 'nix-command flakes'];

export interface FlakeMetadata {
  /** The git revision, when the flake is a git repository without local changes. */
  revision?: string;
  /** The locked reference, the identity of what is built. */
  locked: Record<string, unknown>;
}

export class NixTool {
  private readonly builds: Semaphore;

  constructor(private readonly options: { timeoutMs: number; maxBuilds: number }) {
    this.builds = new Semaphore(options.maxBuilds);
  }

  async resolve(packageSet: string, requested: string[], signal?: AbortSignal): Promise<Resolution> {
    const args = ['--eval', '--strict', '--json', '-E', resolverExpression(packageSet), '--argstr', 'requested', JSON.stringify(requested.map((p) => p.split('.')))];
    const out = await runNix({ command: 'nix-instantiate', args, what: 'evaluation of the package set', timeoutMs: this.options.timeoutMs, signal });
    return JSON.parse(out) as Resolution;
  }

  /** Builds the attribute paths; their output paths, in order. */
  async buildPackages(packageSet: string, attrs: string[][], signal?: AbortSignal): Promise<string[]> {
    const args = ['--no-out-link', '-E', buildExpression(packageSet), '--argstr', 'attrs', JSON.stringify(attrs)];
    const what = `nix-build of ${attrs.map((a) => a.join('.')).join(', ')}`;
    const out = await this.builds.run(() => runNix({ command: 'nix-build', args, what, timeoutMs: this.options.timeoutMs, signal }));
    return out.split('\n').filter(Boolean);
  }

  async closure(paths: string[], signal?: AbortSignal): Promise<StorePathInfo[]> {
    const out = await runNix({ command: 'nix', args: [...FEATURES, 'path-info', '--recursive', '--json', ...paths], what: 'nix path-info', timeoutMs: this.options.timeoutMs, signal });
    return (JSON.parse(out) as Array<{ path: string; narSize: number; references?: string[] }>).map((p) => ({ path: p.path, narSize: p.narSize, references: p.references ?? [] }));
  }

  async flakeMetadata(flakeRef: string, signal?: AbortSignal): Promise<FlakeMetadata> {
    const out = await runNix({ command: 'nix', args: [...FEATURES, 'flake', 'metadata', '--json', flakeRef], what: `nix flake metadata ${flakeRef}`, timeoutMs: this.options.timeoutMs, signal });
    const json = JSON.parse(out) as { revision?: string; locked?: Record<string, unknown> };
    return { revision: json.revision, locked: json.locked ?? {} };
  }

  /** Builds `<flakeRef>#<attr>`; its output paths. */
  async buildFlake(flakeRef: string, attr: string, signal?: AbortSignal): Promise<string[]> {
    const installable = `${flakeRef}#${attr}`;
    const args = [...FEATURES, 'build', '--no-link', '--json', installable];
    const out = await this.builds.run(() => runNix({ command: 'nix', args, what: `nix build ${installable}`, timeoutMs: this.options.timeoutMs, signal }));
    return (JSON.parse(out) as Array<{ outputs: Record<string, string> }>).flatMap((r) => Object.values(r.outputs));
  }
}
