import { fileURLToPath } from 'node:url';
import { MessageChannel, type Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import { Piscina } from 'piscina';
import { Semaphore } from '../util/semaphore.js';
import type { RenderTask } from './render-worker.js';
import { ClientGone, MAX_WAITING_RENDERS, VizBusyError, VizLimitError } from './limits.js';

export interface GraphRendererOptions {
  /** Wall-clock limit of one layout, from the moment it starts. */
  timeoutMs: number;
  /** Layouts running at once (one worker thread each); further requests wait. */
  maxRenders: number;
  log: Logger;
}

/** The worker module beside this one, with this module's extension (`.ts` under tsx). */
const WORKER = fileURLToPath(new URL(`./render-worker${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url));

/**
 * Draws DOT as SVG in worker threads, never on the main thread. A layout that outlasts
 * the time limit, or whose client leaves, is abandoned: its worker is terminated (Graphviz
 * cannot be interrupted otherwise) and the pool starts a fresh one for the next graph.
 */
export class GraphRenderer {
  private readonly slots: Semaphore;
  private readonly pool: Piscina<RenderTask, string>;

  constructor(private readonly options: GraphRendererOptions) {
    this.slots = new Semaphore(options.maxRenders);
    // The slots queue requests, so the pool never does; idle workers (Graphviz loaded, a
    // few MB) stay a minute for the next graph.
    this.pool = new Piscina({ filename: WORKER, minThreads: 0, maxThreads: options.maxRenders, idleTimeout: 60_000 });
    this.pool.on('workerCreate', () => this.watchWorkers());
  }

  private readonly watched = new WeakSet<Worker>();

  /** Logs when each worker thread has really ended (terminated, or idle past its time). */
  private watchWorkers(): void {
    for (const worker of this.pool.threads.filter((w) => !this.watched.has(w))) {
      this.watched.add(worker);
      worker.once('exit', () => this.options.log.debug({ renderWorkers: this.pool.threads.length }, 'graph render worker exited'));
    }
  }

  /**
   * A standalone SVG document of `dot`. Rejects with VizLimitError past the time limit,
   * VizBusyError when too many graphs wait, ClientGone when `signal` aborts.
   */
  async render(dot: string, signal?: AbortSignal): Promise<string> {
    if (this.slots.queued >= MAX_WAITING_RENDERS) {
      throw new VizBusyError(`viz is drawing ${this.options.maxRenders} graphs and ${MAX_WAITING_RENDERS} more are waiting; try again in a minute`);
    }
    return this.slots.run(async () => {
      if (signal?.aborted) throw new ClientGone();
      const deadline = AbortSignal.timeout(this.options.timeoutMs);
      // The worker says when Graphviz starts: before that an abort only unqueues the task.
      const progress = new MessageChannel();
      let laying = false;
      progress.port1.once('message', () => {
        laying = true;
        this.options.log.debug({ dotBytes: dot.length }, 'graph layout running in a worker');
      });
      progress.port1.unref();
      try {
        const rendered = this.pool.run({ dot, progress: progress.port2 }, { signal: signal ? AbortSignal.any([signal, deadline]) : deadline, transferList: [progress.port2] });
        this.watchWorkers(); // the pool starts a worker for the task at once if it has none free
        return await rendered;
      } catch (err) {
        const fate = laying ? 'its worker was terminated' : 'it had not started';
        if (signal?.aborted) {
          this.options.log.info(`graph render abandoned: the client left; ${fate}`);
          throw new ClientGone();
        }
        if (deadline.aborted) {
          this.options.log.warn({ timeoutMs: this.options.timeoutMs }, `graph render abandoned: time limit; ${fate}`);
          throw new VizLimitError(`the graph could not be laid out within ${this.options.timeoutMs / 1000} s (KONTAIN_VIZ_RENDER_TIMEOUT); draw fewer images`);
        }
        throw err;
      } finally {
        progress.port1.close();
      }
    });
  }

}

/** The `<svg>` element alone, for putting inside an HTML page (no XML prolog or DOCTYPE). */
export function inlineSvg(svg: string): string {
  const start = svg.indexOf('<svg');
  return start < 0 ? svg : svg.slice(start);
}
