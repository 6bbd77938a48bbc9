/**
 * The highWaterMark of each stream step a blob's bytes pass through (upstream body,
 * verifier, store copy, client feed, file writer): one socket read's worth.
 *
 * Deeper queues cost CPU instead of saving it. A chunk still waiting in a queue when V8
 * runs a young-generation collection (and a blob's 64 KiB buffers trigger one every few
 * dozen MB) is promoted to the old generation, so its memory comes back only with a full
 * mark-compact. With 1 MiB queues at every step a cold 200 MB mirror copy ran 10-15 of
 * those and spent about a fifth of its CPU in garbage collection; with one chunk per
 * step about half as many, and the copy took ~15% less CPU (bench/mirror's image; the
 * count varies with load, as V8's heuristics do).
 */
export const BLOB_STREAM_HIGH_WATER_MARK = 64 * 1024;
