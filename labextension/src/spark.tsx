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
