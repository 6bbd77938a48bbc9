import { Transform, type TransformCallback } from 'node:stream';
import { crc32 } from 'node:zlib';

const MAX_STORED_BLOCK = 0xffff;
/** gzip header: magic, CM=deflate, no flags, mtime 0, no XFL, OS unknown. */
const HEADER = Buffer.from([0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0, 0x00, 0xff]);
/** A final, empty stored block. */
const FINAL_BLOCK = Buffer.from([0x01, 0x00, 0x00, 0xff, 0xff]);

/**
 * gzip without compression: the input framed as stored deflate blocks (RFC 1951 §3.2.4).
 * zlib at level 0 makes the same kind of stream but copies every byte through its
 * window on the thread pool; for data that cannot shrink (random layers) this framing
 * passes the input buffers through untouched and only computes the CRC.
 */
export class StoredGzip extends Transform {
  private crc = 0;
  private length = 0;
  private started = false;

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    if (!this.started) {
      this.push(HEADER);
      this.started = true;
    }
    this.crc = crc32(chunk, this.crc);
    this.length = (this.length + chunk.length) >>> 0;
    for (let offset = 0; offset < chunk.length; offset += MAX_STORED_BLOCK) {
      const block = chunk.subarray(offset, offset + MAX_STORED_BLOCK);
      const header = Buffer.allocUnsafe(5);
      header[0] = 0x00; // not final, stored
      header.writeUInt16LE(block.length, 1);
      header.writeUInt16LE(~block.length & 0xffff, 3);
      this.push(header);
      this.push(block);
    }
    callback();
  }

  override _flush(callback: TransformCallback): void {
    if (!this.started) this.push(HEADER);
    const trailer = Buffer.allocUnsafe(8);
    trailer.writeUInt32LE(this.crc >>> 0, 0);
    trailer.writeUInt32LE(this.length, 4);
    this.push(FINAL_BLOCK);
    this.push(trailer);
    callback();
  }
}
