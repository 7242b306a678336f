/** Small DOM builders shared by the sidebar and the run view, styled in style/base.css. */

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className: string,
  ...children: (Node | string)[]
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (className) {
    node.className = className;
  }
  node.append(...children);
  return node;
}

/** The run's status as a coloured pill; the colour comes from `data-status`. */
export function statusBadge(status: string): HTMLElement {
  const badge = h('span', 'jp-Finetune-badge', status);
  badge.dataset.status = status;
  return badge;
}

/** A thin bar filled to `progress` (0..1); empty while the run has no step count yet. */
export function progressBar(progress: number | null): HTMLElement {
  const bar = h('div', 'jp-Finetune-progress');
  const fill = h('div', 'jp-Finetune-progress-fill');
  fill.style.width = `${Math.round((progress ?? 0) * 100)}%`;
  bar.appendChild(fill);
  return bar;
}

/** A number to `digits` decimals, as the notebook's tables show it; '—' when missing (null: a NaN). */
export function fixed(value: unknown, digits: number): string {
  return typeof value === 'number' ? value.toFixed(digits) : '—';
}

/** A loss to three significant digits: 2.00, 1.95, 0.0123. */
export function formatLoss(value: number | null): string {
  return value === null ? '—' : value.toPrecision(3);
}

/** A value of a settings table: numbers to 4 significant digits, objects and lists as compact JSON. */
export function formatValue(value: unknown): string {
  if (typeof value === 'number') {
    return Number.isInteger(value) ? String(value) : String(Number(value.toPrecision(4)));
  }
  if (value === null || value === undefined) {
    return '—';
  }
  return typeof value === 'object' ? JSON.stringify(value) : String(value);
}

export function steps(step: number, maxSteps: number | null): string {
  return maxSteps ? `step ${step}/${maxSteps}` : `step ${step}`;
}

/** A table in JupyterLab's own table style (ui-components' jp-sortable-table classes). */
export function table(header: string[], rows: (string | Node)[][]): HTMLTableElement {
  const row = (cells: (string | Node)[], tag: 'th' | 'td') =>
    h('tr', 'jp-sortable-table-tr', ...cells.map(cell => h(tag, '', cell)));
  return h(
    'table',
    'jp-sortable-table jp-Finetune-table',
    h('thead', '', row(header, 'th')),
    h('tbody', '', ...rows.map(cells => row(cells, 'td')))
  );
}
