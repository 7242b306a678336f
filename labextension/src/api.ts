import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

/** One row of `runs` (the server's views.summary_row). */
export interface IRunRow {
  name: string;
  status: string;
  model: string;
  data: string;
  step: number;
  max_steps: number | null;
  progress: number | null;
  last_train_loss: number | null;
  best_eval_loss: number | null;
  updated: number;
}

/** One saved evaluation of `runs/<name>`: scores per system, and the verdict in words. */
export interface IEvalSummary {
  data_version: string | null;
  metrics: string[] | null;
  systems: Record<string, ISystemScores> | null;
  verdict: string | null;
  updated: number;
}

export interface ISystemScores {
  scores?: Record<string, number | null>;
  prompt_tokens?: number | null;
  latency_s?: number | null;
  tokens_per_s?: number | null;
}

/** `runs/<name>`: the row plus the saved settings, data manifest and evaluations. */
export interface IRunDetail extends IRunRow {
  config: Record<string, unknown>;
  data_summary: Record<string, unknown>;
  evals: IEvalSummary[];
}

/** One metrics record: `loss` on train log steps, `eval_loss` on eval steps. */
export interface IMetric {
  step: number;
  loss?: number | null;
  eval_loss?: number | null;
}

/** `runs/<name>/metrics?after=`: the records past that step (and the run's status, not needed here). */
export interface IMetricsPage {
  metrics: IMetric[];
}

export interface IGpu {
  index: number;
  name: string;
  memory_used: number | null;
  memory_total: number | null;
  utilization: number | null;
}

export interface IResources {
  gpus: IGpu[];
  cpu: { count: number | null; percent: number };
  memory: { used: number; total: number };
}

/** The server extension's endpoints under `<base_url>/jupyter-finetune/api/`. */
export class FinetuneAPI {
  constructor(private readonly settings: ServerConnection.ISettings) {}

  /** GET one endpoint; ServerConnection adds the token and XSRF header the server's auth needs. */
  async get<T>(path: string): Promise<T> {
    const url = URLExt.join(this.settings.baseUrl, 'jupyter-finetune', 'api', path);
    const response = await ServerConnection.makeRequest(url, {}, this.settings);
    if (!response.ok) {
      throw await ServerConnection.ResponseError.create(response);
    }
    return (await response.json()) as T;
  }
}

/**
 * A run's metrics records, fetched incrementally with `metrics?after=`.
 *
 * `after` is a step, and a train record and an eval record can share one, the eval record written
 * later; so each poll asks again from the last step held and skips the records of it already held.
 */
export class MetricsFeed {
  readonly records: IMetric[] = [];

  constructor(
    private readonly api: FinetuneAPI,
    readonly name: string
  ) {}

  /** Fetch the newer records; true when any arrived. */
  async update(): Promise<boolean> {
    const last = this.records.length ? this.records[this.records.length - 1].step : null;
    const after = last === null ? -1 : last - 1;
    const page = await this.api.get<IMetricsPage>(
      `runs/${encodeURIComponent(this.name)}/metrics?after=${after}`
    );
    const held = this.records.filter(r => r.step === last).length;
    const fresh = [
      ...page.metrics.filter(r => r.step === last).slice(held),
      ...page.metrics.filter(r => last === null || r.step > last)
    ];
    this.records.push(...fresh);
    return fresh.length > 0;
  }

  /** [step, value] pairs of one loss, the records without it skipped. */
  points(key: 'loss' | 'eval_loss'): [number, number][] {
    return this.records.flatMap(r => {
      const value = r[key];
      return typeof value === 'number' ? [[r.step, value] as [number, number]] : [];
    });
  }
}
