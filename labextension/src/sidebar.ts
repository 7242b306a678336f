import { Poll } from '@lumino/polling';
import { Widget } from '@lumino/widgets';

import { FinetuneAPI, IRunRow, MetricsFeed } from './api';
import { sparkline } from './chart';
import { damageNote, formatLoss, h, progressBar, statusBadge, steps } from './dom';

/** How often the list is read while the sidebar is open; a failing server is retried less often. */
const INTERVAL_MS = 2500;

/**
 * The runs of the store, newest first: status badge, model, progress, losses and a train-loss sparkline; a damaged
 * run also says which file is damaged and why.
 *
 * It polls `runs` only while it is visible, and fetches a run's metrics only when the run's status
 * file changed since the last poll (its `updated` time), so an idle store costs one request a poll.
 */
export class RunsList extends Widget {
  private readonly poll: Poll;
  private readonly feeds = new Map<string, MetricsFeed>();
  private readonly seen = new Map<string, number>();
  private shown = '';

  constructor(
    private readonly api: FinetuneAPI,
    private readonly open: (name: string) => void
  ) {
    super();
    this.addClass('jp-Finetune-runs');
    this.poll = new Poll({
      factory: () => this.refresh(),
      frequency: { interval: INTERVAL_MS, backoff: true, max: 30000 },
      standby: () => !this.isVisible || 'when-hidden',
      name: 'jupyter-finetune:runs'
    });
  }

  dispose(): void {
    this.poll.dispose();
    super.dispose();
  }

  /** Read the list now: the toolbar's refresh button. */
  async refreshNow(): Promise<void> {
    await this.poll.refresh();
  }

  /** Read at once on show: the poll stood by while the sidebar was closed. */
  protected onAfterShow(): void {
    void this.poll.refresh();
  }

  private async refresh(): Promise<void> {
    let runs: IRunRow[];
    try {
      runs = (await this.api.get<{ runs: IRunRow[] }>('runs')).runs;
    } catch (error) {
      this.display([h('p', 'jp-Finetune-empty', `Could not read the runs: ${error}`)], String(error));
      throw error;
    }
    const changed = runs.filter(run => this.seen.get(run.name) !== run.updated);
    await Promise.all(
      changed.map(run =>
        this.feed(run.name)
          .update()
          .then(
            () => this.seen.set(run.name, run.updated),
            () => undefined // its sparkline is read again at the next poll
          )
      )
    );
    const key = JSON.stringify(runs);
    if (runs.length === 0) {
      this.display([h('p', 'jp-Finetune-empty', 'No runs yet. Train one in a notebook with %ft_train.')], key);
    } else {
      this.display([h('ul', 'jp-Finetune-runlist', ...runs.map(run => this.item(run)))], key);
    }
  }

  private feed(name: string): MetricsFeed {
    let feed = this.feeds.get(name);
    if (!feed) {
      feed = new MetricsFeed(this.api, name);
      this.feeds.set(name, feed);
    }
    return feed;
  }

  /** Replace the content only when the data changed, so the list keeps its scroll and focus. */
  private display(nodes: Node[], key: string): void {
    if (key !== this.shown) {
      this.shown = key;
      this.node.replaceChildren(...nodes);
    }
  }

  private item(run: IRunRow): HTMLElement {
    const losses = `loss ${formatLoss(run.last_train_loss)} · eval ${formatLoss(run.best_eval_loss)}`;
    const item = h(
      'li',
      'jp-Finetune-run',
      h('div', 'jp-Finetune-run-head', h('span', 'jp-Finetune-run-name', run.name), statusBadge(run.status)),
      h('div', 'jp-Finetune-run-meta', `${run.model} · ${steps(run.step, run.max_steps)}`),
      ...damageNote(run.damage),
      progressBar(run.progress),
      h(
        'div',
        'jp-Finetune-run-losses',
        h('span', '', losses),
        sparkline(this.feed(run.name).points('loss'))
      )
    );
    item.dataset.run = run.name;
    item.tabIndex = 0;
    item.title = `Open ${run.name}`;
    item.addEventListener('click', () => this.open(run.name));
    item.addEventListener('keydown', event => {
      if (event.key === 'Enter' || event.key === ' ') {
        event.preventDefault();
        this.open(run.name);
      }
    });
    return item;
  }
}
