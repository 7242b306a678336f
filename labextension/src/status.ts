import { Poll } from '@lumino/polling';
import { Widget } from '@lumino/widgets';

import { FinetuneAPI, IGpu, IResources } from './api';

const GIB = 1024 ** 3;

function gib(bytes: number | null): string {
  return bytes === null ? '?' : (bytes / GIB).toFixed(1);
}

function sum(values: (number | null)[]): number | null {
  return values.includes(null) ? null : (values as number[]).reduce((a, b) => a + b, 0);
}

/** The status bar's text: GPU memory when there is a GPU (what limits fine-tuning), else CPU and RAM. */
export function resourcesText(r: IResources): string {
  const gpus = r.gpus;
  if (gpus.length > 0) {
    const used = sum(gpus.map(g => g.memory_used));
    const total = sum(gpus.map(g => g.memory_total));
    return `${gpus.length > 1 ? `${gpus.length} GPUs` : 'GPU'} ${gib(used)}/${gib(total)} GiB`;
  }
  return `CPU ${Math.round(r.cpu.percent)}% · RAM ${gib(r.memory.used)}/${gib(r.memory.total)} GiB`;
}

function gpuLine(g: IGpu): string {
  const utilization = g.utilization === null ? '' : `, ${Math.round(g.utilization)}% busy`;
  return `GPU ${g.index} ${g.name}: ${gib(g.memory_used)}/${gib(g.memory_total)} GiB${utilization}`;
}

/** A status bar item read from `resources` every few seconds while the page is visible. */
export class ResourcesItem extends Widget {
  private readonly poll: Poll;

  constructor(api: FinetuneAPI) {
    super();
    this.addClass('jp-StatusBar-TextItem');
    this.addClass('jp-Finetune-resources');
    this.node.textContent = 'GPU …';
    this.poll = new Poll({
      factory: async () => {
        const resources = await api.get<IResources>('resources');
        this.node.textContent = resourcesText(resources);
        this.node.title = [
          ...resources.gpus.map(gpuLine),
          `${resources.cpu.count ?? '?'} CPU cores, ${Math.round(resources.cpu.percent)}% busy`,
          `RAM ${gib(resources.memory.used)}/${gib(resources.memory.total)} GiB used`
        ].join('\n');
      },
      frequency: { interval: 3000, backoff: true, max: 60000 },
      standby: 'when-hidden',
      name: 'jupyter-finetune:resources'
    });
  }

  dispose(): void {
    this.poll.dispose();
    super.dispose();
  }
}
