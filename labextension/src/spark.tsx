/**
 * Small time-series charts (uPlot, canvas): the bee panel's last minutes. A chart is made once and handed new data on each sync, so a busy swarm
 * costs a redraw, not a new chart.
 */
import { useEffect, useRef } from 'react';
import uPlot from 'uplot';

import 'uplot/dist/uPlot.min.css';

export interface Line {
  label: string;
  values: number[];
  color: string;
}

/** `ago` (seconds before the newest sample, oldest first) as the x axis: -120 .. 0. */
function data(ago: number[], lines: Line[]): uPlot.AlignedData {
  return [ago.map(a => -a), ...lines.map(l => l.values)];
}

export function Chart(props: {
  ago: number[];
  lines: Line[];
  width: number;
  height: number;
  axes?: boolean;
  className?: string;
  title?: string;
}): JSX.Element {
  const { ago, lines, width, height, axes = false } = props;
  const host = useRef<HTMLDivElement>(null);
  const chart = useRef<uPlot | null>(null);
  const shape = `${lines.map(l => l.label).join('|')}|${width}x${height}|${axes}`;
  useEffect(() => {
    if (!host.current) {
      return;
    }
    const opts: uPlot.Options = {
      width,
      height,
      legend: { show: axes },
      cursor: { show: axes, drag: { x: false, y: false } },
      scales: { x: { time: false } },
      axes: axes
        ? [{ size: 24, values: (_u, ticks) => ticks.map(t => `${Math.round(t)}s`) }, { size: 40 }]
        : [{ show: false }, { show: false }],
      series: [{}, ...lines.map(l => ({ label: l.label, stroke: l.color, width: 1, points: { show: false } }))]
    };
    chart.current = new uPlot(opts, data(ago, lines), host.current);
    return () => {
      chart.current?.destroy();
      chart.current = null;
    };
  }, [shape]);
  useEffect(() => {
    chart.current?.setData(data(ago, lines));
  });
  return <div ref={host} className={props.className} title={props.title} data-points={ago.length} />;
}

const SPARK_W = 150;
const SPARK_H = 22;

/** One series as an SVG polyline's points, scaled to its own maximum (a flat zero line
 * when it never rose). */
function points(values: number[]): string {
  const top = Math.max(...values, 0) || 1;
  const step = values.length > 1 ? SPARK_W / (values.length - 1) : 0;
  return values
    .map((v, i) => `${(i * step).toFixed(1)},${(SPARK_H - 1 - (v / top) * (SPARK_H - 2)).toFixed(1)}`)
    .join(' ');
}

/**
 * A node's last minutes drawn inside it: rate, p99 and (when any) errors, each on its
 * own scale. Plain SVG, always the same size (an empty one before data comes), so the
 * node never changes size and React Flow never measures it again for this.
 */
export function Sparkline(props: {
  spark?: { rate: number[]; p99: number[]; errors: number[] };
  colors: { rate: string; p99: string; errors: string };
}): JSX.Element {
  const s = props.spark;
  const lines: [string, number[], string][] = s
    ? [
        ['rate', s.rate, props.colors.rate],
        ['p99', s.p99, props.colors.p99],
        ['errors', s.errors.some(v => v > 0) ? s.errors : [], props.colors.errors]
      ]
    : [];
  return (
    <svg className="bxnb-spark" width={SPARK_W} height={SPARK_H} viewBox={`0 0 ${SPARK_W} ${SPARK_H}`}>
      {lines
        .filter(([, values]) => values.length > 1)
        .map(([name, values, color]) => (
          <polyline key={name} data-series={name} points={points(values)} fill="none" stroke={color} strokeWidth={1} />
        ))}
    </svg>
  );
}
