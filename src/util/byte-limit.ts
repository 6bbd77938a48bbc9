import { Transform, type Readable, type TransformCallback } from 'node:stream';

/** A pass-through that counts bytes and fails with `tooLarge()` once more than `max` have come. */
export class ByteLimit extends Transform {
  bytes = 0;

  constructor(
    private readonly max: number,
    private readonly tooLarge: () => Error,
  ) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.bytes += chunk.length;
    callback(this.bytes > this.max ? this.tooLarge() : null, chunk);
  }
}

/** A small body whole; more than `max` bytes destroys it and throws `tooLarge()`. */
export async function readLimited(body: Readable, max: number, tooLarge: () => Error): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > max) {
      body.destroy();
      throw tooLarge();
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}
