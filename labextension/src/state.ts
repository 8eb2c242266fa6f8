// Made by `python -m bytewax_nb.widget` from bytewax_nb/widget/state.py: do not edit.
// The widget's state as the kernel syncs it, and the edits the front-end sends.

export type BeeStatus = 'starting' | 'ready' | 'redeploying' | 'error' | 'stuck' | 'stopped' | 'idle';

export interface Spark {
  rate: number[];
  p99: number[];
  errors: number[];
}

export interface GatewayNode {
  id: string;
  kind: 'gateway';
  status: BeeStatus;
  url: string | null;
  rps: number;
  errors: number;
  streams: number;
  chunk_rate: number;
  spark?: Spark;
}

export interface Autoscaled {
  min: number;
  max: number;
  desired: number;
  in_flight: number;
  target: number;
  reason: string;
  cold_start_s: number | null;
}

export interface BeeNode {
  id: string;
  kind: 'bee';
  status: BeeStatus;
  ready: number;
  wanted: number;
  rate: number;
  p50_ms: number;
  p99_ms: number;
  errors: number;
  deaths: number;
  dropped: number;
  batch: number;
  join: boolean;
  group: string[];
  spark?: Spark;
  autoscale?: Autoscaled;
}

export interface SwarmEdge {
  source: string;
  target: string;
  join: boolean;
  rate: number;
}

export interface NodeHistory {
  ago: number[];
  rate: number[];
  p50: number[];
  p99: number[];
  errors: number[];
}

export interface LastError {
  type: string;
  message: string;
  traceback: string;
  request_id: string;
  time: number;
}

export interface ReplicaInfo {
  replica: number;
  pid: number | null;
  state: string;
  handled: number;
  queued: number;
}

export interface BeeDetail {
  bee?: string;
  lines?: string[];
  last_error?: LastError | null;
  errors?: LastError[];
  replicas?: ReplicaInfo[];
  history?: NodeHistory | null;
}

export interface Message {
  text?: string;
  level?: 'info' | 'error';
  seq?: number;
}

export interface SpanRecord {
  name: string;
  kind: string;
  bee: string;
  replica: string;
  start_ms: number;
  duration_ms: number;
}

export interface TraceRecord {
  trace_id: string;
  span_id: string;
  parent_id: string;
  request_id: string;
  gateway: string;
  status: number;
  start: number;
  duration_ms: number;
  error: string;
  spans: SpanRecord[];
}

export interface Probe {
  gateway?: string;
  state?: 'running' | 'done' | 'error';
  payload?: string;
  answer?: string;
  error?: string;
  trace?: TraceRecord | null;
  seq?: number;
}

export interface Kept {
  slow: TraceRecord[];
  failed: TraceRecord[];
}

export interface ListedGateway {
  name: string;
  url: string | null;
}

export interface ListedBee {
  name: string;
  state: string;
  ready: number;
  wanted: number;
}

export interface Listed {
  id: string;
  name: string;
  kind: 'swarm' | 'stack';
  runtime: string;
  owner: number | null;
  state: string;
  gateways: ListedGateway[];
  bees: ListedBee[];
  error: string;
}

export type SwarmNode = GatewayNode | BeeNode;

/** What the front-end asks the kernel (to change: checked again there). */
export type Edit =
  | { type: 'connect'; source: string; target: string }
  | { type: 'disconnect'; source: string; target: string }
  | { type: 'replicas'; bee: string; replicas: number }
  | { type: 'remove'; bee: string }
  | { type: 'probe'; gateway: string; payload: string }
  | { type: 'traces' };
