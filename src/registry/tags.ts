/**
 * One page of a tags/list answer, as distribution gives it whatever the source did:
 * lexically sorted, only tags after `last`, at most `n`, and the `last` of the next page
 * when there is more. Upstreams that ignore `n` or `last`, or do not sort, are paged here.
 */
export function pageTags(
  tags: readonly string[],
  page: { n?: number; last?: string },
  sourceHasMore: boolean,
): { tags: string[]; next?: string } {
  const { n, last } = page;
  // Byte order, as Go's sort.Strings: tags are ASCII, where code-unit order is the same.
  const after = [...new Set(tags)].sort().filter((tag) => last === undefined || tag > last);
  if (n === undefined) return { tags: after };
  if (n === 0) return { tags: [] };
  const kept = after.slice(0, n);
  const more = after.length > n || (sourceHasMore && kept.length > 0);
  return more ? { tags: kept, next: kept[kept.length - 1] } : { tags: kept };
}
