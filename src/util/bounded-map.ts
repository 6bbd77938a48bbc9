/**
 * A Map that forgets its oldest entry when a new one would make it hold more than `max`.
 * For memos on a request's hot path: a hit is one Map lookup (lru-cache's bookkeeping on
 * every hit cost more than the lookup itself), and what pulls repeat stays in because
 * the set of distinct keys is small; the bound only matters against a client making keys
 * up, whom first-in-first-out serves no worse than least-recently-used.
 */
export class BoundedMap<K, V> {
  private readonly map = new Map<K, V>();

  constructor(readonly max: number) {}

  get(key: K): V | undefined {
    return this.map.get(key);
  }

  set(key: K, value: V): void {
    if (this.map.size >= this.max && !this.map.has(key)) this.map.delete(this.map.keys().next().value as K);
    this.map.set(key, value);
  }

  get size(): number {
    return this.map.size;
  }
}
