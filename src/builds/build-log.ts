/**
 * A build's log in memory, bounded: the first lines (where the build says what it is
 * doing) and the most recent ones (where it failed) are kept, the middle is counted.
 */
const HEAD_LINES = 200;
const TAIL_LINES = 1000;
const MAX_LINE = 1000;

export class BuildLog {
  private readonly head: string[] = [];
  private tailLines: string[] = [];
  private dropped = 0;

  add(line: string): void {
    const text = line.length > MAX_LINE ? `${line.slice(0, MAX_LINE)}…` : line;
    if (this.head.length < HEAD_LINES) {
      this.head.push(text);
      return;
    }
    this.tailLines.push(text);
    if (this.tailLines.length > TAIL_LINES * 2) {
      // Trim in batches so adding a line stays cheap.
      this.dropped += this.tailLines.length - TAIL_LINES;
      this.tailLines = this.tailLines.slice(-TAIL_LINES);
    }
  }

  /** The last `n` lines that say something. */
  tail(n: number): string[] {
    return [...this.head, ...this.tailLines].filter((line) => line.trim() !== '' && !line.startsWith('kontain: ')).slice(-n);
  }

  text(): string {
    let tail = this.tailLines;
    let dropped = this.dropped;
    if (tail.length > TAIL_LINES) {
      dropped += tail.length - TAIL_LINES;
      tail = tail.slice(-TAIL_LINES);
    }
    const gap = dropped > 0 ? [`… ${dropped} lines left out …`] : [];
    return [...this.head, ...gap, ...tail].join('\n') + '\n';
  }
}
