/**
 * The Swarm graph: the kernel syncs the graph and its figures about once a second;
 * this view draws them with React Flow and turns gestures into edit messages. The
 * kernel owns the truth: an edit is checked here for a quick refusal, then applied
 * (or refused) by the kernel, and the next sync shows the result.
 *
 * It needs of its model only what every widget host gives: anywidget's model (VS Code,
 * Colab, marimo, JupyterLab and Notebook through anywidget) and an ipywidgets model
 * (the lab extension) both have these methods.
 */
import {
  Background,
  Connection,
  Edge,
  Handle,
  MarkerType,
  Node,
  NodeProps,
  Position,
  ReactFlow,
  NodeChange,
  ReactFlowProvider,
  useNodesInitialized,
  useReactFlow,
  useStore
} from '@xyflow/react';
import { useEffect, useMemo, useRef, useState } from 'react';
import { createRoot } from 'react-dom/client';

import '@xyflow/react/dist/style.css';
import '../style/index.css';

import {
  BeeNode,
  Edit,
  Frame,
  GatewayNode,
  SwarmEdge,
  SwarmNode,
  checkConnect,
  checkDisconnect,
  checkRemove,
  checkReplicas,
  edgeId,
  formatMs,
  formatRate,
  frames,
  layout,
  structureKey
} from './graph';
import { Chart, Line, Sparkline } from './spark';
import type { BeeDetail, Kept, LastError, Message, NodeHistory, Probe } from './state';
import { GatewayPanel } from './trace';

/** What the view needs of its synced model. */
export interface SwarmModelLike {
  get(name: string): unknown;
  set(name: string, value: unknown): void;
  save_changes(): void;
  send(content: Edit): void;
  on(event: string, callback: () => void): void;
  off(event: string, callback: () => void): void;
}

/** A model attribute as React state, following the model's change events. */
function useModel<T>(model: SwarmModelLike, name: string): T {
  const [value, setValue] = useState<T>(model.get(name) as T);
  useEffect(() => {
    const update = (): void => setValue(model.get(name) as T);
    model.on(`change:${name}`, update);
    update(); // a change between the first render and this subscription
    return () => {
      model.off(`change:${name}`, update);
    };
  }, [model, name]);
  return value;
}

type BeeData = { node: BeeNode; picked: boolean };
type GatewayData = { node: GatewayNode; picked: boolean };

const RATE = '#1f6feb';
const P99 = '#bf8700';
const P50 = '#2da44e';
const ERRORS = '#cf222e';
const SPARK_COLORS = { rate: RATE, p99: P99, errors: ERRORS };

function BeeNodeView({ data }: NodeProps<Node<BeeData>>): JSX.Element {
  const n = data.node;
  return (
    <div className={`bxnb-node bxnb-bee bxnb-${n.status}${data.picked ? ' bxnb-picked' : ''}`}>
      <Handle type="target" position={Position.Left} />
      <div className="bxnb-title">
        <span className="bxnb-name">{n.id}</span>
        <span className="bxnb-status">{n.status}</span>
      </div>
      <div className="bxnb-figures">
        <span title="replicas ready / wanted">
          {n.ready}/{n.wanted} replicas
        </span>
        {n.autoscale ? (
          <span
            className="bxnb-autoscale"
            title={`autoscaled: ${n.autoscale.in_flight} in flight, target ${n.autoscale.target} per replica`}
          >
            {n.autoscale.min}–{n.autoscale.max} auto
          </span>
        ) : null}
        <span title="messages handled per second">{formatRate(n.rate)}</span>
        <span title="p50 / p99 call time">
          p50 {formatMs(n.p50_ms)} · p99 {formatMs(n.p99_ms)}
        </span>
        <span title="exceptions raised" className={n.errors ? 'bxnb-bad' : ''}>
          {n.errors} errors
        </span>
        {n.deaths ? (
          <span title="replicas that died and were restarted" className="bxnb-bad">
            {n.deaths} restarts
          </span>
        ) : null}
        {n.dropped ? (
          <span title="bus frames dropped (bad signature, replayed, expired, undeliverable)" className="bxnb-bad">
            {n.dropped} dropped
          </span>
        ) : null}
        {n.batch > 1 || n.join ? (
          <span>{n.join ? 'join' : `batch ${n.batch.toFixed(1)}`}</span>
        ) : null}
      </div>
      {n.autoscale?.reason ? (
        <div className="bxnb-decision" title="the autoscaler's last decision">
          {n.autoscale.reason}
          {n.autoscale.cold_start_s != null ? ` · cold start ${n.autoscale.cold_start_s.toFixed(2)} s` : ''}
        </div>
      ) : null}
      <Sparkline spark={n.spark} colors={SPARK_COLORS} />
      <Handle type="source" position={Position.Right} />
    </div>
  );
}

function GatewayNodeView({ data }: NodeProps<Node<GatewayData>>): JSX.Element {
  const n = data.node;
  return (
    <div className={`bxnb-node bxnb-gateway bxnb-${n.status}`}>
      <div className="bxnb-title">
        <span className="bxnb-name">{n.id}</span>
        <span className="bxnb-status">gateway</span>
      </div>
      <div className="bxnb-figures">
        <span className="bxnb-url">{n.url ?? 'not serving'}</span>
        <span title="requests per second">{formatRate(n.rps)}</span>
        {n.streams > 0 || n.chunk_rate > 0 ? (
          <span title="streamed answers being written now, and their chunks per second">
            {n.streams} streams, {formatRate(n.chunk_rate)} chunks
          </span>
        ) : null}
        <span title="requests answered with an error" className={n.errors ? 'bxnb-bad' : ''}>
          {n.errors} errors
        </span>
      </div>
      <Sparkline spark={n.spark} colors={SPARK_COLORS} />
      <Handle type="source" position={Position.Right} />
    </div>
  );
}

type FrameData = { frame: Frame };

/** Drawn behind the bees of a fused chain: they share one process per replica. */
function FrameView({ data }: NodeProps<Node<FrameData>>): JSX.Element {
  const f = data.frame;
  return (
    <div
      className="bxnb-frame"
      data-bees={f.bees.join(' ')}
      title={`${f.bees.join(', ')}: fused, one process per replica`}
      style={{ width: f.width, height: f.height }}
    >
      <span className="bxnb-frame-label">one process: {f.bees.join(' → ')}</span>
    </div>
  );
}

const nodeTypes = { bee: BeeNodeView, gateway: GatewayNodeView, frame: FrameView };

/** An edge's label: its rate when it carries anything, and whether it feeds a join
 * (an edge saved by an earlier version has no rate). */
function edgeLabel(e: SwarmEdge): string | undefined {
  const rate = e.rate ?? 0;
  if (e.join) {
    return rate > 0 ? `join ${formatRate(rate)}` : 'join';
  }
  return rate > 0 ? formatRate(rate) : undefined;
}

/** The panel's charts of a bee's last minutes: rate, latency, errors. */
function panelCharts(h: NodeHistory): Line[][] {
  return [
    [{ label: 'msg/s', values: h.rate, color: RATE }],
    [
      { label: 'p50 ms', values: h.p50, color: P50 },
      { label: 'p99 ms', values: h.p99, color: P99 }
    ],
    [{ label: 'errors/s', values: h.errors, color: ERRORS }]
  ];
}

function ErrorItem({ e }: { e: LastError }): JSX.Element {
  const when = e.time ? new Date(e.time * 1000).toLocaleTimeString() : '';
  return (
    <details className="bxnb-error-item">
      <summary>
        {when} {e.type}: {e.message}
      </summary>
      <pre className="bxnb-error">{e.traceback || '(no traceback)'}</pre>
    </details>
  );
}

function BeePanel(props: {
  bee: BeeNode;
  detail: BeeDetail;
  history?: NodeHistory;
  edges: SwarmEdge[];
  edit: (e: Edit) => void;
  refuse: (why: string) => void;
}): JSX.Element {
  const { bee, detail } = props;
  const [replicas, setReplicas] = useState(String(bee.wanted));
  useEffect(() => setReplicas(String(bee.wanted)), [bee.id, bee.wanted]);
  const apply = (): void => {
    const value = Number(replicas);
    const why = checkReplicas(value);
    if (why) {
      props.refuse(why);
    } else {
      props.edit({ type: 'replicas', bee: bee.id, replicas: value });
    }
  };
  const remove = (): void => {
    const why = checkRemove(props.edges, bee.id);
    if (why) {
      props.refuse(why);
    } else {
      props.edit({ type: 'remove', bee: bee.id });
    }
  };
  const mine = detail.bee === bee.id;
  return (
    <div className="bxnb-panel" data-panel="bee">
      <div className="bxnb-panel-title">bee {bee.id}</div>
      <label>
        replicas{' '}
        <input
          className="bxnb-replicas"
          type="number"
          min={1}
          value={replicas}
          onChange={ev => setReplicas(ev.target.value)}
          onKeyDown={ev => ev.key === 'Enter' && apply()}
        />
      </label>
      <button className="bxnb-apply" onClick={apply}>
        Apply
      </button>
      <button className="bxnb-remove-bee" onClick={remove}>
        Remove bee
      </button>
      {props.history && props.history.ago.length > 1 ? (
        <div className="bxnb-charts">
          <div className="bxnb-subtitle">last minutes</div>
          {panelCharts(props.history).map(lines => (
            <Chart
              key={lines[0].label}
              ago={props.history?.ago ?? []}
              lines={lines}
              width={300}
              height={80}
              axes={true}
              className="bxnb-chart"
            />
          ))}
        </div>
      ) : null}
      <div className="bxnb-subtitle">replicas</div>
      <table className="bxnb-replica-table">
        <tbody>
          {mine
            ? (detail.replicas ?? []).map(r => (
                <tr key={r.replica} data-replica={r.replica}>
                  <td>#{r.replica}</td>
                  <td>pid {r.pid ?? '-'}</td>
                  <td>{r.state}</td>
                  <td>{r.handled} handled</td>
                  <td>{r.queued} queued</td>
                </tr>
              ))
            : null}
        </tbody>
      </table>
      <div className="bxnb-subtitle">recent errors</div>
      <div className="bxnb-errors">
        {mine && (detail.errors ?? []).length ? (
          (detail.errors ?? []).map(e => <ErrorItem key={`${e.time}|${e.request_id}`} e={e} />)
        ) : (
          <pre className="bxnb-error">
            {mine && detail.last_error
              ? `${detail.last_error.type}: ${detail.last_error.message}\n${detail.last_error.traceback}`
              : 'none'}
          </pre>
        )}
      </div>
      <div className="bxnb-subtitle">recent log lines</div>
      <pre className="bxnb-logs">{mine ? (detail.lines ?? []).join('\n') || '(none yet)' : 'loading...'}</pre>
    </div>
  );
}

function EdgePanel(props: { edge: SwarmEdge; remove: () => void }): JSX.Element {
  return (
    <div className="bxnb-panel" data-panel="edge">
      <div className="bxnb-panel-title">
        {props.edge.source} → {props.edge.target}
        {props.edge.join ? ' (join)' : ''}
      </div>
      <button className="bxnb-remove-edge" onClick={props.remove}>
        Remove edge
      </button>
    </div>
  );
}

/** Fit the view again when the graph's shape, the room beside the side panel or the
 * pane's size changes (not on every figure update, so the view holds still while
 * numbers move), and only once every node has been measured: a fit computed from
 * unmeasured nodes, or for a pane not laid out yet, can leave the graph out of sight. */
function FitOnChange({ shape }: { shape: string }): null {
  const flow = useReactFlow();
  const measured = useNodesInitialized();
  const width = useStore(s => s.width);
  const height = useStore(s => s.height);
  useEffect(() => {
    if (!measured || width === 0 || height === 0) {
      return;
    }
    const frame = window.requestAnimationFrame(() => void flow.fitView({ padding: 0.15 }));
    return () => window.cancelAnimationFrame(frame);
  }, [flow, shape, measured, width, height]);
  return null;
}

function SwarmApp({ model }: { model: SwarmModelLike }): JSX.Element {
  const nodes = useModel<SwarmNode[]>(model, 'nodes');
  const edges = useModel<SwarmEdge[]>(model, 'edges');
  const message = useModel<Message>(model, 'message');
  const selected = useModel<string>(model, 'selected');
  const detail = useModel<BeeDetail>(model, 'detail');
  const pending = useModel<string>(model, 'pending');
  const running = useModel<boolean>(model, 'running');
  const swarm = useModel<string>(model, 'swarm');
  const probe = useModel<Probe>(model, 'probe');
  const kept = useModel<Kept>(model, 'kept');
  const [refusal, setRefusal] = useState<string | null>(null);
  const [pickedEdge, setPickedEdge] = useState<string | null>(null);
  const [pickedGateway, setPickedGateway] = useState<string | null>(null);
  useEffect(() => setRefusal(null), [message.seq]);

  const key = structureKey(nodes, edges);
  // laid out again only when nodes or edges come or go, not when figures change
  const positions = useMemo(() => layout(nodes, edges), [key]);

  const edit = (e: Edit): void => {
    setRefusal(null);
    model.send(e);
  };
  const pick = (bee: string): void => {
    model.set('selected', bee);
    model.save_changes();
  };

  // React Flow keeps a node's size on the node object it is given: a fresh object
  // without it (every refresh makes new ones) is hidden and its edges dropped until it
  // is measured again, which a busy browser may never get to (the graph went blank
  // under load). So the sizes it reports are kept here and handed back each time.
  const sizes = useRef(new Map<string, { width: number; height: number }>());
  const onNodesChange = (changes: NodeChange[]): void => {
    for (const c of changes) {
      if (c.type === 'dimensions' && c.dimensions) {
        sizes.current.set(c.id, c.dimensions);
      }
    }
  };
  const boxes: Node[] = frames(nodes, positions).map(f => ({
    id: f.id,
    type: 'frame',
    position: { x: f.x, y: f.y },
    data: { frame: f },
    draggable: false,
    selectable: false,
    connectable: false,
    zIndex: -1,
    width: f.width,
    height: f.height,
    measured: { width: f.width, height: f.height } // its size is ours: never hidden unmeasured
  }));
  const rfNodes: Node[] = [
    ...boxes,
    ...nodes.map(n => ({
      id: n.id,
      type: n.kind,
      position: positions.get(n.id) ?? { x: 0, y: 0 },
      data: { node: n, picked: n.id === selected },
      draggable: false,
      measured: sizes.current.get(n.id)
    }))
  ];
  const rfEdges: Edge[] = edges.map(e => ({
    id: edgeId(e),
    source: e.source,
    target: e.target,
    label: edgeLabel(e),
    className: e.join ? 'bxnb-join' : undefined,
    selected: edgeId(e) === pickedEdge,
    markerEnd: { type: MarkerType.ArrowClosed }
  }));

  const onConnect = (c: Connection): void => {
    const why = checkConnect(nodes, edges, c.source, c.target);
    if (why) {
      setRefusal(why);
    } else {
      edit({ type: 'connect', source: c.source, target: c.target });
    }
  };
  const removeEdge = (e: SwarmEdge): void => {
    const why = checkDisconnect(nodes, edges, e.source, e.target);
    if (why) {
      setRefusal(why);
    } else {
      setPickedEdge(null);
      edit({ type: 'disconnect', source: e.source, target: e.target });
    }
  };

  const bee = nodes.find((n): n is BeeNode => n.kind === 'bee' && n.id === selected);
  const edge = edges.find(e => edgeId(e) === pickedEdge);
  const gateway = nodes.find((n): n is GatewayNode => n.kind === 'gateway' && n.id === pickedGateway);
  const shown = refusal ?? message.text;
  const level = refusal ? 'error' : (message.level ?? 'info');
  return (
    <div className="bxnb-widget">
      <div className="bxnb-bar">
        <span className="bxnb-swarm">swarm {swarm}</span>
        <span className={`bxnb-swarm-state bxnb-swarm-${running ? 'running' : 'stopped'}`}>
          {running ? 'running' : 'stopped'}
        </span>
        {pending ? <span className="bxnb-pending">applying: {pending}</span> : null}
        {shown ? <span className={`bxnb-message bxnb-${level}`}>{shown}</span> : null}
      </div>
      <div className="bxnb-main">
        <div className="bxnb-graph">
          <ReactFlow
            nodes={rfNodes}
            edges={rfEdges}
            nodeTypes={nodeTypes}
            onNodesChange={onNodesChange}
            onConnect={onConnect}
            onNodeClick={(_, n) => {
              setPickedEdge(null);
              setPickedGateway(n.type === 'gateway' ? n.id : null);
              pick(n.type === 'bee' ? n.id : '');
            }}
            onEdgeClick={(_, e) => {
              setPickedGateway(null);
              setPickedEdge(e.id);
            }}
            onPaneClick={() => {
              setPickedEdge(null); // a click on the background closes the side panel
              setPickedGateway(null);
              pick('');
            }}
            deleteKeyCode={null}
            fitView
            fitViewOptions={{ padding: 0.15 }}
            proOptions={{ hideAttribution: true }}
          >
            <Background gap={16} />
            <FitOnChange shape={`${key}|${edge ? 'edge' : bee ? 'bee' : gateway ? 'gateway' : ''}`} />
          </ReactFlow>
        </div>
        {edge ? (
          <EdgePanel edge={edge} remove={() => removeEdge(edge)} />
        ) : gateway ? (
          <GatewayPanel gateway={gateway} probe={probe} kept={kept} ask={e => model.send(e)} />
        ) : bee ? (
          <BeePanel
            bee={bee}
            detail={detail}
            history={detail.bee === bee.id ? (detail.history ?? undefined) : undefined}
            edges={edges}
            edit={edit}
            refuse={setRefusal}
          />
        ) : null}
      </div>
    </div>
  );
}

/** Draw the graph of `model` into `el`; the returned function takes it down again. */
export function mount(el: HTMLElement, model: SwarmModelLike): () => void {
  const host = document.createElement('div');
  host.className = 'bxnb-host';
  // keys typed in the widget (numbers, Enter) must not run notebook shortcuts
  host.setAttribute('data-lm-suppress-shortcuts', 'true');
  el.appendChild(host);
  const root = createRoot(host);
  root.render(
    <ReactFlowProvider>
      <SwarmApp model={model} />
    </ReactFlowProvider>
  );
  return () => {
    root.unmount();
    host.remove();
  };
}
