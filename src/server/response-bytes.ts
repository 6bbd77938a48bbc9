import type { ServerResponse } from 'node:http';

const COUNTER = Symbol('response bytes');

/**
 * Body bytes written to a response so far, as a getter. The first call wraps `write` and
 * `end` once; the request log and the metrics both read the same count, so every chunk
 * passes through one wrapper, not one per reader.
 */
export function responseBytes(res: ServerResponse): () => number {
  const holder = res as ServerResponse & { [COUNTER]?: () => number };
  const existing = holder[COUNTER];
  if (existing) return existing;
  let bytes = 0;
  const count = (chunk: unknown) => {
    if (chunk && typeof chunk !== 'function') bytes += chunk instanceof Uint8Array ? chunk.byteLength : Buffer.byteLength(String(chunk));
  };
  const write = res.write.bind(res);
  res.write = ((chunk: unknown, ...rest: unknown[]) => {
    count(chunk);
    return (write as (...args: unknown[]) => boolean)(chunk, ...rest);
  }) as typeof res.write;
  const end = res.end.bind(res);
  res.end = ((chunk?: unknown, ...rest: unknown[]) => {
    count(chunk);
    return (end as (...args: unknown[]) => ServerResponse)(chunk, ...rest);
  }) as typeof res.end;
  const getter = () => bytes;
  holder[COUNTER] = getter;
  return getter;
}
