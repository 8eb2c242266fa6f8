/**
 * A gateway's panel: a test payload to send (traced), its answer or error, and the
 * waterfall of where its time went; the slowest and failed requests the gateways keep,
 * each opened as a waterfall too. The kernel sends and reads; this only draws.
 */
import { useEffect, useState } from 'react';

import type { Edit, GatewayNode } from './state';
import type { Kept, Probe, SpanRecord, TraceRecord } from './state';

const KIND_COLOR: Record<string, string> = {
  request: '#9e9e9e',
  'hand-off': '#f9a825',
  waiting: '#8e24aa',
  running: '#1e88e5'
};

function label(s: SpanRecord): string {
  return s.kind === 'request' ? s.name : `${s.bee}[${s.replica}] ${s.kind}`;
}

/** One row per span, a bar where it lies in the request (its width at least a pixel). */
export function Waterfall({ trace }: { trace: TraceRecord }): JSX.Element {
  const total = trace.duration_ms || 1;
  return (
    <div className="bxnb-waterfall" data-trace={trace.trace_id}>
      <div className="bxnb-waterfall-head">
        status {trace.status} · {trace.duration_ms.toFixed(2)} ms · trace {trace.trace_id.slice(0, 8)}…
      </div>
      {trace.spans.map((s, i) => (
        <div className="bxnb-span" key={i} data-kind={s.kind} data-bee={s.bee}>
          <span className="bxnb-span-label" title={label(s)}>
            {label(s)}
          </span>
          <span className="bxnb-span-track">
            <span
              className="bxnb-span-bar"
              style={{
                left: `${(s.start_ms / total) * 100}%`,
                width: `max(1px, ${(s.duration_ms / total) * 100}%)`,
                background: KIND_COLOR[s.kind] ?? '#607d8b'
              }}
            />
          </span>
          <span className="bxnb-span-ms">{s.duration_ms.toFixed(3)} ms</span>
        </div>
      ))}
      {trace.error ? <pre className="bxnb-error">{trace.error}</pre> : null}
    </div>
  );
}

function KeptList(props: { title: string; traces: TraceRecord[]; open: (t: TraceRecord) => void }): JSX.Element {
  return (
    <div className="bxnb-kept" data-kept={props.title}>
      <div className="bxnb-subtitle">{props.title}</div>
      {props.traces.length === 0 ? <div className="bxnb-kept-none">none</div> : null}
      {props.traces.map(t => (
        <button className="bxnb-kept-item" key={t.trace_id} onClick={() => props.open(t)}>
          {t.duration_ms.toFixed(1)} ms · {t.status} · {new Date(t.start * 1000).toLocaleTimeString()}
        </button>
      ))}
    </div>
  );
}

export function GatewayPanel(props: {
  gateway: GatewayNode;
  probe: Probe;
  kept: Kept;
  ask: (e: Edit) => void;
}): JSX.Element {
  const { gateway, probe } = props;
  const mine = probe.gateway === gateway.id;
  const [payload, setPayload] = useState(mine && probe.payload ? probe.payload : '{}');
  const [opened, setOpened] = useState<TraceRecord | null>(null);
  useEffect(() => setOpened(null), [probe.seq]);
  const send = (): void => props.ask({ type: 'probe', gateway: gateway.id, payload });
  // nothing asked yet: the kernel's trait is still {}
  const kept = { slow: props.kept?.slow ?? [], failed: props.kept?.failed ?? [] };
  const shown = opened ?? (mine ? probe.trace : null);
  return (
    <div className="bxnb-panel" data-panel="gateway">
      <div className="bxnb-panel-title">gateway {gateway.id}</div>
      <div className="bxnb-subtitle">test payload (JSON)</div>
      <textarea
        className="bxnb-probe-payload"
        rows={4}
        value={payload}
        spellCheck={false}
        onChange={ev => setPayload(ev.target.value)}
        onKeyDown={ev => ev.key === 'Enter' && (ev.ctrlKey || ev.metaKey) && send()}
      />
      <button className="bxnb-probe-send" onClick={send} disabled={mine && probe.state === 'running'}>
        Send, traced
      </button>
      {mine && probe.state === 'running' ? <div className="bxnb-probe-running">sending…</div> : null}
      {mine && probe.state === 'done' ? <pre className="bxnb-probe-answer">{probe.answer}</pre> : null}
      {mine && probe.state === 'error' ? <pre className="bxnb-error bxnb-probe-error">{probe.error}</pre> : null}
      {shown ? <Waterfall trace={shown} /> : null}
      <button className="bxnb-kept-load" onClick={() => props.ask({ type: 'traces' })}>
        Slowest and failed requests
      </button>
      <KeptList title="slowest" traces={kept.slow.filter(t => t.gateway === gateway.id)} open={setOpened} />
      <KeptList title="failed" traces={kept.failed.filter(t => t.gateway === gateway.id)} open={setOpened} />
    </div>
  );
}
