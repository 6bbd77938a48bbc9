/**
 * Choosing the package set for an apk world (shared/specs/apk.md §4, provider selection).
 *
 * A greedy resolver, like apko's rather than apk-tools' full solver: each needed name is
 * settled once, by the most preferred candidate that does not clash with what is already
 * chosen. Three things keep greed from choosing badly:
 *  - a name offered by several different packages is deferred until nothing else is
 *    pending, so a provider that something else pulls in anyway is reused;
 *  - when a later constraint rejects a package already chosen for its name, the constraint
 *    is remembered and resolution restarts with it applied from the start (bounded: each
 *    restart adds a distinct constraint);
 *  - install_if packages are considered only once the queue is empty.
 * Deliberate omissions: `@tag` pins are parsed but neither enforced nor preferred (rule 3;
 * records do not say which tagged repository they came from), and nothing is "already
 * installed" (rule 2) because images start empty — a candidate already chosen is reused.
 */
import { type Dependency, type Provide, formatDependency, parseDependency, parseProvide, satisfies } from './dependency.js';
import { type ApkPackage, ResolveError } from './types.js';
import { compareApkVersions } from './version.js';

export interface ResolveOptions {
  /** Records of other architectures (other than `noarch`) are ignored. */
  arch?: string;
}

/** What one package offers under one name: its own name, or one of its provides. */
interface Offer {
  pkg: ApkPackage;
  /** Version offered; absent for an unversioned provide. */
  version?: string;
}

interface Need {
  dep: Dependency;
  parent?: ApkPackage;
}

const id = (p: ApkPackage) => `${p.name}-${p.version}`;
const whose = (parent?: ApkPackage) => (parent ? id(parent) : 'the requested world');
const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
/** "x conflicts with y (why)", or "x is forbidden (why)" when the world itself forbids x. */
const against = (pkg: ApkPackage, clash: { other: ApkPackage; why: string }) =>
  clash.other === pkg ? `${id(pkg)} is forbidden (${clash.why})` : `${id(pkg)} conflicts with ${id(clash.other)} (${clash.why})`;
const MAX_RESTARTS = 64;

/** A constraint that resolution must restart with. */
class Restart {
  constructor(readonly need: Need) {}
}

/** Every record, indexed once: offers by name, parsed tokens by package. */
class Universe {
  readonly offers = new Map<string, Offer[]>();
  readonly order = new Map<ApkPackage, number>();
  readonly installIf: ApkPackage[] = [];
  readonly repositories: string;
  private readonly parsed = new Map<ApkPackage, { deps: Dependency[]; installIf: Dependency[]; badDeps: string[]; badInstallIf: string[] }>();
  private readonly provided = new Map<ApkPackage, Provide[]>();

  constructor(readonly packages: readonly ApkPackage[]) {
    packages.forEach((pkg, i) => {
      this.order.set(pkg, i);
      this.offer(pkg.name, { pkg, version: pkg.version });
      for (const p of this.providesOf(pkg)) if (p.name !== pkg.name) this.offer(p.name, { pkg, version: p.version });
      if (pkg.installIf.length > 0) this.installIf.push(pkg);
    });
    // Name order, newest first: the install_if pass takes the first eligible record per name.
    this.installIf.sort((a, b) => cmp(a.name, b.name) || compareApkVersions(b.version, a.version) || this.order.get(a)! - this.order.get(b)!);
    this.repositories = [...new Set(packages.map((p) => p.repository))].join(', ') || '(no repositories)';
  }

  private offer(name: string, offer: Offer): void {
    const list = this.offers.get(name);
    if (list) list.push(offer);
    else this.offers.set(name, [offer]);
  }

  /** A malformed provide in some record must not sink every resolution: it is just never offered. */
  providesOf(pkg: ApkPackage): Provide[] {
    const cached = this.provided.get(pkg);
    if (cached) return cached;
    const out: Provide[] = [];
    for (const token of pkg.provides) {
      try {
        out.push(parseProvide(token));
      } catch {
        /* skipped, see above */
      }
    }
    this.provided.set(pkg, out);
    return out;
  }

  tokens(pkg: ApkPackage) {
    let entry = this.parsed.get(pkg);
    if (!entry) {
      const parse = (list: string[], bad: string[]) =>
        list.flatMap((t) => {
          try {
            return [parseDependency(t)];
          } catch {
            bad.push(t);
            return [];
          }
        });
      const badDeps: string[] = [];
      const badInstallIf: string[] = [];
      entry = { deps: parse(pkg.depends, badDeps), installIf: parse(pkg.installIf, badInstallIf), badDeps, badInstallIf };
      this.parsed.set(pkg, entry);
    }
    return entry;
  }
}

/** Whether an offer meets a dependency's version part (`!` is the caller's business). */
function accepts(offer: Offer, dep: Dependency): boolean {
  if (dep.op === undefined) return true;
  // An unversioned provide cannot meet a versioned constraint; `><` names the package itself.
  if (offer.version === undefined) return false;
  return satisfies(dep, offer.version, offer.pkg.checksum);
}

class Selection {
  readonly byName = new Map<string, ApkPackage>();
  readonly offered = new Map<string, Offer[]>();
  /** Names that only one package may hold: package names and versioned provides. */
  readonly owner = new Map<string, ApkPackage>();
  readonly conflicts: Need[] = [];
  readonly originVersions = new Set<string>();
  readonly queue: Need[] = [];
  readonly deferred: Need[] = [];
  readonly chosen: ApkPackage[] = [];

  constructor(
    private readonly universe: Universe,
    readonly learned: Map<string, Need[]>,
  ) {}

  satisfier(dep: Dependency): Offer | undefined {
    return this.offered.get(dep.name)?.find((o) => accepts(o, dep));
  }

  /** The chosen package `pkg` cannot live with, and why; undefined when there is none. */
  clash(pkg: ApkPackage): { other: ApkPackage; why: string } | undefined {
    const same = this.byName.get(pkg.name);
    if (same && same !== pkg) return { other: same, why: `only one ${pkg.name} can be installed` };
    if (same) return undefined;
    for (const p of this.universe.providesOf(pkg)) {
      const holder = p.version !== undefined ? this.owner.get(p.name) : undefined;
      if (holder && holder !== pkg) return { other: holder, why: `both provide ${p.name}` };
    }
    const ownHolder = this.owner.get(pkg.name);
    if (ownHolder) return { other: ownHolder, why: `both provide ${pkg.name}` };
    if (this.conflicts.length > 0) {
      const mine: Array<[string, Offer]> = [[pkg.name, { pkg, version: pkg.version }], ...this.universe.providesOf(pkg).map((p): [string, Offer] => [p.name, { pkg, version: p.version }])];
      for (const c of this.conflicts) {
        if (c.parent === pkg || !mine.some(([n, o]) => n === c.dep.name && accepts(o, c.dep))) continue;
        return { other: c.parent ?? pkg, why: c.parent ? `${id(c.parent)} conflicts with ${formatDependency(c.dep)}` : `the world forbids ${formatDependency(c.dep)}` };
      }
    }
    for (const dep of this.universe.tokens(pkg).deps) {
      if (!dep.conflict) continue;
      const hit = this.satisfier(dep);
      if (hit && hit.pkg !== pkg) return { other: hit.pkg, why: `${id(pkg)} conflicts with ${formatDependency(dep)}` };
    }
    return undefined;
  }

  /** Whether `pkg` meets every constraint remembered for `name` from earlier attempts. */
  meetsLearned(name: string, offer: Offer): boolean {
    return (this.learned.get(name) ?? []).every((n) => accepts(offer, n.dep));
  }

  hasLearned(dep: Dependency): boolean {
    const token = formatDependency(dep);
    return (this.learned.get(dep.name) ?? []).some((n) => formatDependency(n.dep) === token);
  }

  select(pkg: ApkPackage, parent?: ApkPackage): void {
    const clash = this.clash(pkg);
    if (clash) throw new ResolveError('conflict', `needed by ${whose(parent)}: ${against(pkg, clash)}`);
    const { deps, badDeps } = this.universe.tokens(pkg);
    if (badDeps.length > 0) throw new ResolveError('bad-constraint', `${id(pkg)} has malformed dependencies: ${badDeps.join(' ')}`);
    this.byName.set(pkg.name, pkg);
    this.chosen.push(pkg);
    if (pkg.origin) this.originVersions.add(`${pkg.origin}\0${pkg.version}`);
    const add = (name: string, offer: Offer) => {
      const list = this.offered.get(name);
      if (list) list.push(offer);
      else this.offered.set(name, [offer]);
      if (offer.version !== undefined) this.owner.set(name, pkg);
    };
    add(pkg.name, { pkg, version: pkg.version });
    for (const p of this.universe.providesOf(pkg)) if (p.name !== pkg.name) add(p.name, { pkg, version: p.version });
    for (const dep of deps) {
      if (dep.conflict) this.conflicts.push({ dep, parent: pkg });
      else this.queue.push({ dep, parent: pkg });
    }
  }
}

export function resolvePackages(world: readonly string[], available: readonly ApkPackage[], options: ResolveOptions = {}): ApkPackage[] {
  const records = options.arch ? available.filter((p) => !p.arch || p.arch === options.arch || p.arch === 'noarch') : available;
  const universe = new Universe(records);
  const wanted = world.map((token) => parseDependency(token));
  const learned = new Map<string, Need[]>();
  for (let attempt = 0; ; attempt++) {
    try {
      return installOrder(solve(universe, wanted, learned), universe);
    } catch (e) {
      if (!(e instanceof Restart)) throw e;
      const { need } = e;
      const known = learned.get(need.dep.name) ?? [];
      known.push(need);
      learned.set(need.dep.name, known);
      if (attempt >= MAX_RESTARTS) throw new ResolveError('conflict', `gave up after ${MAX_RESTARTS} attempts; last conflict on ${formatDependency(need.dep)} (needed by ${whose(need.parent)})`);
    }
  }
}

function solve(universe: Universe, world: Dependency[], learned: Map<string, Need[]>): Selection {
  const sel = new Selection(universe, learned);
  for (const dep of world) (dep.conflict ? sel.conflicts : sel.queue).push({ dep });
  let next = 0;
  for (;;) {
    while (next < sel.queue.length) settle(sel, universe, sel.queue[next++]!, true);
    const waiting = sel.deferred.findIndex((n) => !sel.satisfier(n.dep));
    if (waiting >= 0) {
      const [need] = sel.deferred.splice(waiting, 1);
      settle(sel, universe, need!, false);
      continue;
    }
    sel.deferred.length = 0;
    const extra = installIfCandidate(sel, universe);
    if (!extra) return sel;
    sel.select(extra);
  }
}

/** Make sure one dependency is met, choosing and selecting a provider if it is not. */
function settle(sel: Selection, universe: Universe, need: Need, mayDefer: boolean): void {
  const { dep, parent } = need;
  if (sel.satisfier(dep)) return;
  const offers = universe.offers.get(dep.name) ?? [];
  if (offers.length === 0) {
    throw new ResolveError('unknown-package', `package ${dep.name}${parent ? ` (needed by ${id(parent)})` : ''} not found in ${universe.repositories}`);
  }
  const fits = offers.filter((o) => accepts(o, dep) && sel.meetsLearned(dep.name, o));
  if (fits.length === 0) throw unsatisfiable(need, offers, sel);
  // Versioned provides are auto-selectable like real names. An unversioned provide is
  // selectable when it has a provider_priority, or when every candidate is the same package:
  // there is nothing to choose between, and refusing would break ordinary worlds (Alpine
  // 3.16's alpine-baselayout needs /bin/sh, which only busybox provides, with no k:).
  // Several unprioritised providers of a virtual: refused like apk-tools, the user chooses.
  let pool = fits.filter((o) => o.pkg.name === dep.name || o.version !== undefined || o.pkg.providerPriority !== undefined);
  const names = new Set(fits.map((o) => o.pkg.name));
  if (pool.length === 0 && names.size === 1) pool = fits;
  // Several packages could serve: wait until nothing else is pending, so one that the rest
  // of the world pulls in anyway (or names explicitly) is reused rather than a second one added.
  if (mayDefer && names.size > 1) {
    sel.deferred.push(need);
    return;
  }
  if (pool.length === 0) {
    const list = [...names].sort().join(', ');
    throw new ResolveError('unsatisfiable', `${formatDependency(dep)} (needed by ${whose(parent)}) is a virtual package provided by ${list}, none with a provider_priority; choose one by adding it to the package list`);
  }
  pool.sort((a, b) => prefer(a, b, parent, sel, universe));
  const viable = pool.find((o) => !sel.clash(o.pkg));
  if (viable) return sel.select(viable.pkg, parent);
  const best = pool[0]!;
  const clash = sel.clash(best.pkg)!;
  // The name is already held by a package this constraint rejects: remember the constraint
  // and start over, so the first choice of that name already honours it.
  const held = sel.byName.get(dep.name) ?? sel.owner.get(dep.name);
  if (held && !(sel.hasLearned(dep))) throw new Restart(need);
  throw new ResolveError(
    'conflict',
    `${formatDependency(dep)} (needed by ${whose(parent)}): ${against(best.pkg, clash)}`,
  );
}

/** apk's candidate order (spec "Provider selection"); negative when `a` is preferred. */
function prefer(a: Offer, b: Offer, parent: ApkPackage | undefined, sel: Selection, universe: Universe): number {
  const first = (x: boolean, y: boolean) => (x === y ? 0 : x ? -1 : 1);
  if (parent) {
    const byRepo = first(a.pkg.repository === parent.repository, b.pkg.repository === parent.repository);
    if (byRepo) return byRepo;
    if (parent.origin) {
      const byOrigin = first(a.pkg.origin === parent.origin, b.pkg.origin === parent.origin);
      if (byOrigin) return byOrigin;
    }
  }
  const sibling = (o: Offer) => o.pkg.origin !== undefined && sel.originVersions.has(`${o.pkg.origin}\0${o.pkg.version}`);
  const bySibling = first(sibling(a), sibling(b));
  if (bySibling) return bySibling;
  // Rule 4. A versioned offer (the package of that name, or a versioned provide, which
  // "behaves like a real package") beats an unversioned provide, whatever its priority:
  // asking for foo when a package foo exists must not give a virtual provider of foo.
  const byVersioned = first(a.version !== undefined, b.version !== undefined);
  if (byVersioned) return byVersioned;
  if (a.version !== undefined && b.version !== undefined) {
    const byOffered = compareApkVersions(b.version, a.version);
    if (byOffered) return byOffered;
  }
  if (a.pkg.name === b.pkg.name) {
    const byVersion = compareApkVersions(b.pkg.version, a.pkg.version);
    if (byVersion) return byVersion;
  }
  const byPriority = (b.pkg.providerPriority ?? 0) - (a.pkg.providerPriority ?? 0);
  if (byPriority) return byPriority;
  return compareApkVersions(b.pkg.version, a.pkg.version) || cmp(a.pkg.name, b.pkg.name) || universe.order.get(a.pkg)! - universe.order.get(b.pkg)!;
}

function unsatisfiable(need: Need, offers: Offer[], sel: Selection): ResolveError {
  const { dep, parent } = need;
  const shown = [...offers]
    .sort((a, b) => compareApkVersions(b.version ?? '', a.version ?? '') || cmp(a.pkg.name, b.pkg.name))
    .map((o) => (o.pkg.name === dep.name ? o.version! : `${o.version ?? '(unversioned)'} from ${id(o.pkg)}`));
  const unique = [...new Set(shown)];
  const list = unique.slice(0, 12).join(', ') + (unique.length > 12 ? `, … (${unique.length} in all)` : '');
  const token = formatDependency(dep);
  const also = (sel.learned.get(dep.name) ?? []).filter((n) => formatDependency(n.dep) !== token).map((n) => `${formatDependency(n.dep)} (needed by ${whose(n.parent)})`);
  return new ResolveError(
    'unsatisfiable',
    `${token} (needed by ${whose(parent)}) cannot be satisfied: available ${dep.name} versions ${list}${also.length ? `; it must also satisfy ${also.join(', ')}` : ''}`,
  );
}

/**
 * The first install_if record (by name, newest first) whose conditions the selection now
 * meets and which fits with it. One whose own dependencies then fail fails the resolution,
 * as it would in apk.
 */
function installIfCandidate(sel: Selection, universe: Universe): ApkPackage | undefined {
  for (const pkg of universe.installIf) {
    if (sel.byName.has(pkg.name) || !sel.meetsLearned(pkg.name, { pkg, version: pkg.version })) continue;
    // A condition apk cannot read can never be met, so such a record never triggers.
    const { installIf: conditions, badInstallIf } = universe.tokens(pkg);
    if (conditions.length === 0 || badInstallIf.length > 0) continue;
    if (!conditions.every((d) => (d.conflict ? !sel.satisfier(d) : sel.satisfier(d) !== undefined))) continue;
    if (!sel.clash(pkg)) return pkg;
  }
  return undefined;
}

/**
 * Dependencies before dependents; among packages that are ready, name order. When nothing
 * is ready the rest contains a cycle (gcc ↔ libstdc++ in Wolfi): walk from the first
 * waiting package along first dependencies until a package repeats, and release the
 * member of that cycle with the fewest unplaced dependencies, then by name — so a cycle is
 * broken inside itself, never at a bystander, and the same input gives the same order.
 */
function installOrder(sel: Selection, universe: Universe): ApkPackage[] {
  const chosen = [...sel.chosen].sort((a, b) => cmp(a.name, b.name));
  const waitsOn = new Map<ApkPackage, Set<ApkPackage>>();
  const users = new Map<ApkPackage, ApkPackage[]>();
  for (const pkg of chosen) {
    const before = new Set<ApkPackage>();
    const { deps, installIf } = universe.tokens(pkg);
    for (const dep of [...deps, ...installIf]) {
      if (dep.conflict) continue;
      for (const o of sel.offered.get(dep.name) ?? []) if (o.pkg !== pkg && accepts(o, dep)) before.add(o.pkg);
    }
    waitsOn.set(pkg, before);
    for (const d of before) {
      const list = users.get(d);
      if (list) list.push(pkg);
      else users.set(d, [pkg]);
    }
  }
  const out: ApkPackage[] = [];
  const placed = new Set<ApkPackage>();
  while (out.length < chosen.length) {
    const left = chosen.filter((p) => !placed.has(p));
    const next = left.find((p) => waitsOn.get(p)!.size === 0) ?? inCycle(left[0]!, waitsOn);
    placed.add(next);
    out.push(next);
    for (const u of users.get(next) ?? []) waitsOn.get(u)!.delete(next);
  }
  return out;
}

function inCycle(start: ApkPackage, waitsOn: Map<ApkPackage, Set<ApkPackage>>): ApkPackage {
  const firstWait = (p: ApkPackage) => [...waitsOn.get(p)!].sort((a, b) => cmp(a.name, b.name))[0]!;
  const path: ApkPackage[] = [];
  let at = start;
  while (!path.includes(at)) {
    path.push(at);
    at = firstWait(at);
  }
  const cycle = path.slice(path.indexOf(at));
  return cycle.reduce((best, p) => {
    const d = waitsOn.get(p)!.size - waitsOn.get(best)!.size;
    return d < 0 || (d === 0 && cmp(p.name, best.name) < 0) ? p : best;
  });
}
