import { ILayoutRestorer, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { MainAreaWidget } from '@jupyterlab/apputils';
import { IStatusBar } from '@jupyterlab/statusbar';
import { LabIcon, refreshIcon, SidePanel, ToolbarButton } from '@jupyterlab/ui-components';
import { Panel, Widget } from '@lumino/widgets';

import { FinetuneAPI } from './api';
import { RunView } from './runview';
import { RunsList } from './sidebar';
import { ResourcesItem } from './status';

/** A falling curve on axes; the jp-icon3 class lets the theme recolour it. */
const finetuneIcon = new LabIcon({
  name: 'jupyter-finetune:loss',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" width="16" viewBox="0 0 24 24">' +
    '<path class="jp-icon3" fill="#616161" d="M2 2h2v18h18v2H2z"/>' +
    '<path class="jp-icon3" fill="none" stroke="#616161" stroke-width="2" d="M6 4c2 8 4 11 7 12s5 1 9 1"/>' +
    '</svg>'
});

const OPEN_RUN = 'jupyter-finetune:open-run';

/** The sidebar of runs, a main-area view per run, and the GPU/CPU memory item of the status bar. */
const plugin: JupyterFrontEndPlugin<void> = {
  id: 'jupyter-finetune:plugin',
  description: 'Fine-tuning runs in a sidebar, with live loss curves and GPU memory in the status bar.',
  autoStart: true,
  optional: [ILayoutRestorer, IStatusBar],
  activate: (app: JupyterFrontEnd, restorer: ILayoutRestorer | null, statusBar: IStatusBar | null) => {
    const api = new FinetuneAPI(app.serviceManager.serverSettings);
    const views = new Map<string, MainAreaWidget<RunView>>();

    app.commands.addCommand(OPEN_RUN, {
      label: args => `Open fine-tuning run ${args.name ?? ''}`,
      execute: args => {
        const name = String(args.name);
        let view = views.get(name);
        if (!view) {
          view = new MainAreaWidget({ content: new RunView(api, name) });
          view.id = `jupyter-finetune-run-${name}`;
          view.title.label = name;
          view.title.icon = finetuneIcon;
          view.title.closable = true;
          view.disposed.connect(() => views.delete(name));
          views.set(name, view);
          app.shell.add(view, 'main');
        }
        app.shell.activateById(view.id);
      }
    });

    const list = new RunsList(api, name => void app.commands.execute(OPEN_RUN, { name }));
    const panel = new SidePanel({ content: new Panel() });
    panel.id = 'jupyter-finetune-runs';
    panel.title.icon = finetuneIcon;
    panel.title.caption = 'Fine-tuning';
    const title = new Widget({ node: document.createElement('h2') });
    title.node.textContent = 'Fine-tuning';
    title.addClass('jp-Finetune-title');
    panel.header.addWidget(title);
    panel.toolbar.addItem(
      'refresh',
      new ToolbarButton({ icon: refreshIcon, tooltip: 'Refresh the runs', onClick: () => void list.refreshNow() })
    );
    panel.addWidget(list);
    app.shell.add(panel, 'left', { rank: 600 });
    restorer?.add(panel, panel.id);

    statusBar?.registerStatusItem('jupyter-finetune:resources', {
      item: new ResourcesItem(api),
      align: 'left',
      rank: 10
    });
  }
};

export default plugin;
