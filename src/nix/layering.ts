/**
 * Groups a closure's store paths into layers within a budget, after Nixery's idea: paths
 * that many others depend on, or that are large, get a layer of their own, so two images
 * holding the same package share that layer's blob; the rest share one layer.
 *
 * Nixery weighs by popularity across all of nixpkgs; here the popularity of a path is
 * how many paths of this closure refer to it, weighed by its size. With a closure that
 * fits the budget every path is its own layer and sharing is complete.
 */
export interface StorePathInfo {
  path: string;
  narSize: number;
  references: string[];
}

/** Lists of store paths, one per layer, each sorted; at most `budget` lists. */
export function layerGroups(closure: readonly StorePathInfo[], budget: number): string[][] {
  if (budget < 1) throw new Error('layer budget must be at least 1');
  const sorted = [...closure].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  if (sorted.length <= budget) return sorted.map((p) => [p.path]);
  const referrers = new Map<string, number>();
  for (const info of sorted) {
    for (const ref of info.references) if (ref !== info.path) referrers.set(ref, (referrers.get(ref) ?? 0) + 1);
  }
  const weight = (p: StorePathInfo) => (p.narSize + 1) * (1 + (referrers.get(p.path) ?? 0));
  const ranked = [...sorted].sort((a, b) => weight(b) - weight(a) || (a.path < b.path ? -1 : 1));
  const own = ranked.slice(0, budget - 1);
  const ownSet = new Set(own.map((p) => p.path));
  const rest = sorted.filter((p) => !ownSet.has(p.path)).map((p) => p.path);
  return [...own.map((p) => [p.path]).sort((a, b) => (a[0]! < b[0]! ? -1 : 1)), rest];
}
