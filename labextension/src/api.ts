import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

/** One row of `runs` (the server's views.summary_row); `status` is `damaged` when `damage` says why. */
export interface IRunRow {
  name: string;
  status: string;
  damage: string | null;
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

/** One metrics record: `loss` on train log steps, `eval_loss` on eval steps; `attempt` counts resumes from 1. */
export interface IMetric {
  step: number;
  attempt?: number;
  loss?: number | null;
  eval_loss?: number | null;
}

/**
 * `runs/<name>/metrics?after=&attempt=`: the records past that step, and from the first step of any newer attempt.
 * `thinned`: on a long run, the part older than the server's last full records is a sample of the points.
 */
export interface IMetricsPage {
  metrics: IMetric[];
  attempt?: number;
  thinned?: boolean;
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
 * A run's metrics records, fetched incrementally with `metrics?after=&attempt=`.
 *
 * `after` is a step, and a train record and an eval record can share one, the eval record written
 * later; so each poll asks again from the last step held and skips the records of it already held.
 * A resumed run logs a new attempt from the step of its checkpoint, which replaces what the earlier
 * attempt logged from there: a record of another attempt, or with a lower step than the last held
 * (a file written before attempts were numbered), drops the records held from its step on.
 */
export class MetricsFeed {
  readonly records: IMetric[] = [];
  private attempt: number | null = null;

  constructor(
    private readonly api: FinetuneAPI,
    readonly name: string
  ) {}

  /** Fetch the newer records; true when what is held changed. */
  async update(): Promise<boolean> {
    const last = this.records.length ? this.records[this.records.length - 1].step : null;
    const after = last === null ? -1 : last - 1;
    const attempt = this.attempt === null ? '' : `&attempt=${this.attempt}`;
    const page = await this.api.get<IMetricsPage>(
      `runs/${encodeURIComponent(this.name)}/metrics?after=${after}${attempt}`
    );
    let held = this.heldAt(last);
    let changed = false;
    for (const record of Array.isArray(page.metrics) ? page.metrics : []) {
      if (typeof record?.step !== 'number') {
        continue;
      }
      const recordAttempt = typeof record.attempt === 'number' ? record.attempt : 1;
      const tail = this.records[this.records.length - 1];
      if (tail && (recordAttempt !== this.attempt || record.step < tail.step)) {
        while (this.records.length && this.records[this.records.length - 1].step >= record.step) {
          this.records.pop();
        }
        held = 0;
      } else if (record.step === last && held > 0) {
        held--;
        continue;
      }
      this.records.push(record);
      this.attempt = recordAttempt;
      changed = true;
    }
    return changed;
  }

  /** How many records of this step the feed holds (its last ones). */
  private heldAt(step: number | null): number {
    let count = 0;
    for (let i = this.records.length - 1; i >= 0 && this.records[i].step === step; i--) {
      count++;
    }
    return count;
  }

  /** [step, value] pairs of one loss, the records without it skipped. */
  points(key: 'loss' | 'eval_loss'): [number, number][] {
    return this.records.flatMap(r => {
      const value = r[key];
      return typeof value === 'number' && Number.isFinite(value) ? [[r.step, value] as [number, number]] : [];
    });
  }
}
