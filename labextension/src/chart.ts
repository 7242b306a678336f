/** Loss curves as inline SVG: no chart library, colours from the theme's CSS variables (style/base.css). */

const SVG_NS = 'http://www.w3.org/2000/svg';

export type Point = [number, number];

/** One curve: its points and the CSS class that colours it (jp-Finetune-train or jp-Finetune-eval). */
export interface ISeries {
  label: string;
  points: Point[];
  className: string;
}

function svg<K extends keyof SVGElementTagNameMap>(
  tag: K,
  attributes: Record<string, string | number>,
  text?: string
): SVGElementTagNameMap[K] {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attributes)) {
    node.setAttribute(key, String(value));
  }
  if (text !== undefined) {
    node.textContent = text;
  }
  return node;
}

/** The lowest and highest value, in one pass: `Math.min(...values)` overflows the stack past ~150k values. */
function extent(values: number[]): [number, number] {
  let low = Infinity;
  let high = -Infinity;
  for (const v of values) {
    low = v < low ? v : low;
    high = v > high ? v : high;
  }
  return [low, high];
}

/**
 * At most about `buckets` x 2 points to draw: the first and the last, and the lowest and highest of each run of
 * points between, in order, so a spike still shows; a curve that has fewer is drawn as it is.
 */
export function thin(points: Point[], buckets: number): Point[] {
  const n = points.length;
  if (n <= 2 * buckets) {
    return points;
  }
  const out: Point[] = [points[0]];
  for (let b = 0; b < buckets; b++) {
    const [start, end] = [Math.floor((b * n) / buckets), Math.floor(((b + 1) * n) / buckets)];
    let [low, high] = [start, start];
    for (let i = start + 1; i < end; i++) {
      low = points[i][1] < points[low][1] ? i : low;
      high = points[i][1] > points[high][1] ? i : high;
    }
    for (const i of new Set([Math.min(low, high), Math.max(low, high)])) {
      if (i > 0 && i < n - 1) {
        out.push(points[i]);
      }
    }
  }
  out.push(points[n - 1]);
  return out;
}

/** Maps data to pixels in [x0, x1] x [y0, y1]; a flat range is widened so a single value is centred. */
function scale(values: number[], from: number, to: number): (v: number) => number {
  let [low, high] = extent(values);
  if (high === low) {
    low -= 1;
    high += 1;
  }
  return v => from + ((v - low) / (high - low)) * (to - from);
}

function polyline(points: Point[], x: (v: number) => number, y: (v: number) => number, className: string) {
  const coords = points.map(([s, v]) => `${x(s).toFixed(1)},${y(v).toFixed(1)}`).join(' ');
  return svg('polyline', { points: coords, class: className, fill: 'none' });
}

/** A small train-loss line for the sidebar; empty until the run logs two points. */
export function sparkline(all: Point[], width = 72, height = 20): SVGSVGElement {
  const root = svg('svg', { width, height, viewBox: `0 0 ${width} ${height}`, class: 'jp-Finetune-sparkline' });
  const points = thin(all, width);
  if (points.length >= 2) {
    const x = scale(points.map(p => p[0]), 1, width - 1);
    const y = scale(points.map(p => p[1]), height - 2, 2);
    root.appendChild(polyline(points, x, y, 'jp-Finetune-train'));
  }
  return root;
}

function label(value: number): string {
  return Math.abs(value) >= 100 ? value.toFixed(0) : value.toPrecision(3);
}

/**
 * Train and eval loss against step, with labelled axes and a legend; points are marked while they are few. A long
 * curve is thinned to a few points per pixel column before it is drawn.
 */
export function lossChart(all: ISeries[], width = 640, height = 240): SVGSVGElement {
  const series = all.map(s => ({ ...s, points: thin(s.points, width) }));
  const root = svg('svg', {
    viewBox: `0 0 ${width} ${height}`,
    class: 'jp-Finetune-chart',
    role: 'img',
    'aria-label': 'loss curve'
  });
  const drawn = series.flatMap(s => s.points);
  if (drawn.length === 0) {
    root.appendChild(svg('text', { x: width / 2, y: height / 2, 'text-anchor': 'middle' }, 'No loss logged yet'));
    return root;
  }
  const [left, right, top, bottom] = [56, width - 16, 28, height - 32];
  const steps = drawn.map(p => p[0]);
  const x = scale(steps, left, right);
  const values = drawn.map(p => p[1]);
  const y = scale(values, bottom, top);
  const [low, high] = extent(values);
  root.appendChild(svg('path', { d: `M${left},${top}V${bottom}H${right}`, class: 'jp-Finetune-axis' }));
  for (const value of high === low ? [low] : [low, (low + high) / 2, high]) {
    root.appendChild(svg('line', { x1: left, x2: right, y1: y(value), y2: y(value), class: 'jp-Finetune-grid' }));
    root.appendChild(svg('text', { x: left - 6, y: y(value) + 4, 'text-anchor': 'end' }, label(value)));
  }
  for (const step of new Set(extent(steps))) {
    root.appendChild(svg('text', { x: x(step), y: bottom + 16, 'text-anchor': 'middle' }, String(step)));
  }
  root.appendChild(svg('text', { x: (left + right) / 2, y: height - 4, 'text-anchor': 'middle' }, 'step'));
  let legend = left;
  for (const s of series.filter(s => s.points.length > 0)) {
    root.appendChild(polyline(s.points, x, y, s.className));
    for (const [step, value] of s.points.length <= 50 ? s.points : []) {
      root.appendChild(svg('circle', { cx: x(step), cy: y(value), r: 2.5, class: s.className }));
    }
    root.appendChild(svg('line', { x1: legend, x2: legend + 18, y1: 12, y2: 12, class: s.className }));
    root.appendChild(svg('text', { x: legend + 24, y: 16 }, s.label));
    legend += 120;
  }
  return root;
}
