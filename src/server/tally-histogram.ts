import type { Metric } from 'prom-client';

interface Series {
  /** Observations per bucket (not cumulative); the last slot is above every bound. */
  counts: number[];
  sum: number;
  count: number;
}

interface Sample {
  labels: Record<string, string | number>;
  sharedLabels: Record<string, string>;
  value: number;
  metricName: string;
  /** Always none; present because prom-client's samples carry it (null on buckets). */
  exemplar: null | undefined;
}

/**
 * A Prometheus histogram with one label, kept in plain numbers and read by prom-client
 * when it is scraped. prom-client's own Histogram hashes the label set on every observe
 * (objects and strings made per call): for a manifest answered from memory that was about
 * a fifth of its time (bench/static). It needs no prom-client to record, so it records
 * before prom-client is loaded (metrics.ts loads it on first use).
 *
 * It implements the part of prom-client's metric interface the registry reads (name,
 * help, type, aggregator, get, getForPromString, reset) and gives the same samples prom-
 * client's Histogram does, so /metrics shows the same lines.
 */
export class TallyHistogram {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  private readonly series = new Map<string, Series>();

  constructor(
    readonly name: string,
    readonly help: string,
    private readonly labelName: string,
    /** Ascending upper bounds; +Inf is implied. */
    private readonly upperBounds: readonly number[],
  ) {}

  observe(labelValue: string, value: number): void {
    let series = this.series.get(labelValue);
    if (!series) this.series.set(labelValue, (series = { counts: new Array<number>(this.upperBounds.length + 1).fill(0), sum: 0, count: 0 }));
    const bounds = this.upperBounds;
    let bucket = 0;
    while (bucket < bounds.length && value > bounds[bucket]!) bucket++;
    series.counts[bucket]!++;
    series.sum += value;
    series.count++;
  }

  /** As prom-client's Histogram: `_bucket` per bound and +Inf (cumulative), `_sum`, `_count`. */
  getForPromString(): { name: string; help: string; type: string; aggregator: string; values: Sample[] } {
    const values: Sample[] = [];
    for (const [labelValue, { counts, sum, count }] of this.series) {
      const sharedLabels = { [this.labelName]: labelValue };
      let cumulative = 0;
      this.upperBounds.forEach((le, i) => {
        cumulative += counts[i]!;
        values.push({ labels: { le }, sharedLabels, value: cumulative, metricName: `${this.name}_bucket`, exemplar: null });
      });
      values.push({ labels: { le: '+Inf' }, sharedLabels, value: count, metricName: `${this.name}_bucket`, exemplar: null });
      values.push({ labels: {}, sharedLabels, value: sum, metricName: `${this.name}_sum`, exemplar: undefined });
      values.push({ labels: {}, sharedLabels, value: count, metricName: `${this.name}_count`, exemplar: undefined });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  /** The samples with each one's labels in one object, as prom-client's get() gives them (registry JSON). */
  async get(): Promise<{ name: string; help: string; type: string; aggregator: string; values: Array<Omit<Sample, 'sharedLabels'>> }> {
    const data = this.getForPromString();
    return { ...data, values: data.values.map(({ sharedLabels, ...v }) => ({ ...v, labels: { ...v.labels, ...sharedLabels } })) };
  }

  reset(): void {
    this.series.clear();
  }

  /** For Registry.registerMetric, which is typed for prom-client's own classes but reads only the members above. */
  asMetric(): Metric {
    return this as unknown as Metric;
  }
}
