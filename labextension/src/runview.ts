import { Poll } from '@lumino/polling';
import { Widget } from '@lumino/widgets';

import { FinetuneAPI, IEvalSummary, IRunDetail, MetricsFeed } from './api';
import { lossChart } from './chart';
import { damageNote, fixed, formatLoss, formatValue, h, progressBar, statusBadge, steps, table } from './dom';

const INTERVAL_MS = 2500;

/**
 * One run: its loss curves, evaluations, settings and data summary, read again while it is in view; a damaged run
 * says which file is damaged and why, and shows what can still be read.
 *
 * The curves grow from `metrics?after=` (only new records each poll); the rest comes from
 * `runs/<name>` and is redrawn only when it changed, so a finished run's view stays still.
 */
export class RunView extends Widget {
  private readonly poll: Poll;
  private readonly feed: MetricsFeed;
  private readonly head = h('div', 'jp-Finetune-view-head');
  private readonly chart = h('div', 'jp-Finetune-view-chart');
  private readonly details = h('div', 'jp-Finetune-view-details');
  private shown = '';

  constructor(api: FinetuneAPI, readonly runName: string) {
    super();
    this.addClass('jp-Finetune-view');
    this.feed = new MetricsFeed(api, runName);
    this.node.append(this.head, h('h3', '', 'Loss'), this.chart, this.details);
    this.chart.appendChild(lossChart([]));
    this.poll = new Poll({
      factory: async () => {
        try {
          const [detail, grew] = await Promise.all([
            api.get<IRunDetail>(`runs/${encodeURIComponent(runName)}`),
            this.feed.update()
          ]);
          this.render(detail, grew);
        } catch (error) {
          this.shown = '';
          this.head.replaceChildren(h('p', 'jp-Finetune-empty', `Could not read run ${runName}: ${error}`));
          throw error;
        }
      },
      frequency: { interval: INTERVAL_MS, backoff: true, max: 30000 },
      standby: () => !this.isVisible || 'when-hidden',
      name: `jupyter-finetune:run:${runName}`
    });
  }

  dispose(): void {
    this.poll.dispose();
    super.dispose();
  }

  /** Read at once on show: the poll stood by while the tab was in the background. */
  protected onAfterShow(): void {
    void this.poll.refresh();
  }

  private render(detail: IRunDetail, grew: boolean): void {
    if (grew) {
      this.chart.replaceChildren(
        lossChart([
          { label: 'train loss', points: this.feed.points('loss'), className: 'jp-Finetune-train' },
          { label: 'eval loss', points: this.feed.points('eval_loss'), className: 'jp-Finetune-eval' }
        ])
      );
    }
    const key = JSON.stringify(detail);
    if (key === this.shown) {
      return;
    }
    this.shown = key;
    this.head.replaceChildren(
      h('h2', 'jp-Finetune-view-title', detail.name, statusBadge(detail.status)),
      h('div', 'jp-Finetune-run-meta', `${detail.model} · ${detail.data} · ${steps(detail.step, detail.max_steps)}`),
      ...damageNote(detail.damage),
      progressBar(detail.progress),
      h(
        'div',
        'jp-Finetune-run-meta',
        `last train loss ${formatLoss(detail.last_train_loss)} · best eval loss ${formatLoss(detail.best_eval_loss)}`
      )
    );
    this.details.replaceChildren(
      h('h3', '', 'Evaluation'),
      ...(detail.evals.length
        ? detail.evals.map(evalSection)
        : [h('p', 'jp-Finetune-empty', `Not evaluated yet: %ft_eval ${detail.name}`)]),
      h('h3', '', 'Settings'),
      fieldsTable('setting', detail.config),
      h('h3', '', 'Data'),
      fieldsTable('field', detail.data_summary)
    );
  }
}

/** One saved evaluation: a row per system (fine-tuned, base, few-shot), a column per metric, then costs. */
function evalSection(evaluation: IEvalSummary): HTMLElement {
  const metrics = evaluation.metrics ?? [];
  const systems = Object.entries(evaluation.systems ?? {});
  const rows = systems.map(([name, s]) => [
    name,
    ...metrics.map(m => fixed(s.scores?.[m], 2)),
    fixed(s.prompt_tokens, 0),
    fixed(s.latency_s, 3),
    fixed(s.tokens_per_s, 1)
  ]);
  return h(
    'div',
    'jp-Finetune-eval-section',
    h('div', 'jp-Finetune-run-meta', `data version ${evaluation.data_version ?? '?'}`),
    table(['system', ...metrics, 'prompt tokens', 's/request', 'tokens/s'], rows),
    h('p', 'jp-Finetune-verdict', evaluation.verdict ?? '')
  );
}

/**
 * The run's settings or data manifest as name/value rows. The settings' `train` fields are lifted to the top level,
 * as `train.<name>` where the top level has the name too (`backend`: resolved vs asked for).
 */
function fieldsTable(header: string, values: Record<string, unknown>): HTMLElement {
  const { train, ...rest } = values;
  const lifted = typeof train === 'object' && train !== null ? Object.entries(train) : [];
  const rows = [
    ...Object.entries(lifted.length ? rest : values),
    ...lifted.map(([key, value]) => [key in rest ? `train.${key}` : key, value] as [string, unknown])
  ];
  return table(
    [header, 'value'],
    rows.map(([key, value]) => [key, formatValue(value)])
  );
}
