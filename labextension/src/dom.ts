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

/*
 * Every formatter takes `unknown` and never throws: the server checks what it reads from the run store, but a
 * field of the wrong type (an older server, a damaged run) must show as '—', never break the panel.
 */

/** The run's status as a coloured pill; the colour comes from `data-status`. */
export function statusBadge(status: unknown): HTMLElement {
  const text = typeof status === 'string' ? status : '?';
  const badge = h('span', 'jp-Finetune-badge', text);
  badge.dataset.status = text;
  return badge;
}

/** Why a run is damaged (the file and the reason), and what to do about it; nothing for a sound run. */
export function damageNote(damage: unknown): HTMLElement[] {
  if (typeof damage !== 'string' || !damage) {
    return [];
  }
  const fix = 'Fix or delete the file, or train the run again with --overwrite.';
  return [h('div', 'jp-Finetune-damage', `${damage}. ${fix}`)];
}

/** A thin bar filled to `progress` (0..1); empty while the run has no step count yet. */
export function progressBar(progress: unknown): HTMLElement {
  const bar = h('div', 'jp-Finetune-progress');
  const fill = h('div', 'jp-Finetune-progress-fill');
  const fraction = typeof progress === 'number' && Number.isFinite(progress) ? Math.min(1, Math.max(0, progress)) : 0;
  fill.style.width = `${Math.round(fraction * 100)}%`;
  bar.appendChild(fill);
  return bar;
}

/** A number to `digits` decimals, as the notebook's tables show it; '—' when missing (null: a NaN). */
export function fixed(value: unknown, digits: number): string {
  return typeof value === 'number' && Number.isFinite(value) ? value.toFixed(digits) : '—';
}

/** A loss to three significant digits: 2.00, 1.95, 0.0123. */
export function formatLoss(value: unknown): string {
  return typeof value === 'number' && Number.isFinite(value) ? value.toPrecision(3) : '—';
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

export function steps(step: unknown, maxSteps: unknown): string {
  const shown = typeof step === 'number' ? String(step) : '?';
  return typeof maxSteps === 'number' && maxSteps ? `step ${shown}/${maxSteps}` : `step ${shown}`;
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
