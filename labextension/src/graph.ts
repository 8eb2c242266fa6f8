/**
 * The swarm graph as the kernel syncs it, and the pure logic the view needs:
 * layout (dagre), the checks that refuse an invalid edit before it is sent,
 * and how figures are shown. No DOM and no widget model here, so it is unit-tested.
 */
import dagre from '@dagrejs/dagre';

import type { SwarmEdge, SwarmNode } from './state';

export type { BeeNode, BeeStatus, Edit, GatewayNode, SwarmEdge, SwarmNode } from './state';

export const NODE_WIDTH = 220;
export const NODE_HEIGHT = 96;
export const MAX_REPLICAS = 64;

export function edgeId(e: { source: string; target: string }): string {
  return `${e.source}->${e.target}`;
}

/** Changes only when nodes or edges come or go: the cue to lay the graph out again. */
export function structureKey(nodes: SwarmNode[], edges: SwarmEdge[]): string {
  const n = nodes.map(x => `${x.kind}:${x.id}`).sort();
  const e = edges.map(edgeId).sort();
  return `${n.join(',')}|${e.join(',')}`;
}

/** Left-to-right positions (top-left corners) from dagre, producers before consumers. */
export function layout(
  nodes: SwarmNode[],
  edges: SwarmEdge[]
): Map<string, { x: number; y: number }> {
  const g = new dagre.graphlib.Graph();
  g.setGraph({ rankdir: 'LR', nodesep: 30, ranksep: 70, marginx: 10, marginy: 10 });
  g.setDefaultEdgeLabel(() => ({}));
  for (const n of nodes) {
    g.setNode(n.id, { width: NODE_WIDTH, height: NODE_HEIGHT });
  }
  for (const e of edges) {
    if (g.hasNode(e.source) && g.hasNode(e.target)) {
      g.setEdge(e.source, e.target);
    }
  }
  dagre.layout(g);
  const out = new Map<string, { x: number; y: number }>();
  for (const n of nodes) {
    const p = g.node(n.id);
    out.set(n.id, { x: p.x - NODE_WIDTH / 2, y: p.y - NODE_HEIGHT / 2 });
  }
  return out;
}

/** A box drawn around the bees of a fused chain: they run in one process per replica. */
export interface Frame {
  id: string;
  bees: string[];
  x: number;
  y: number;
  width: number;
  height: number;
}

export const FRAME_PAD = 14;

/** One frame per fused chain, around the laid-out positions of its bees. */
export function frames(nodes: SwarmNode[], positions: Map<string, { x: number; y: number }>): Frame[] {
  const seen = new Map<string, string[]>();
  for (const n of nodes) {
    if (n.kind === 'bee' && n.group && n.group.length > 1) {
      seen.set(n.group.join('+'), n.group);
    }
  }
  const out: Frame[] = [];
  for (const [id, bees] of seen) {
    const at = bees.map(b => positions.get(b)).filter((p): p is { x: number; y: number } => !!p);
    if (at.length === 0) {
      continue;
    }
    const x = Math.min(...at.map(p => p.x)) - FRAME_PAD;
    const y = Math.min(...at.map(p => p.y)) - FRAME_PAD - 12; // room for its label
    const right = Math.max(...at.map(p => p.x)) + NODE_WIDTH + FRAME_PAD;
    const bottom = Math.max(...at.map(p => p.y)) + NODE_HEIGHT + FRAME_PAD;
    out.push({ id: `frame:${id}`, bees, x, y, width: right - x, height: bottom - y });
  }
  return out;
}

function inputsOf(edges: SwarmEdge[], bee: string): string[] {
  return edges.filter(e => e.target === bee).map(e => e.source);
}

/** The path target -> ... -> source if one exists (then source -> target closes a cycle). */
function pathBetween(edges: SwarmEdge[], from: string, to: string): string[] | null {
  const next = new Map<string, string[]>();
  for (const e of edges) {
    next.set(e.source, [...(next.get(e.source) ?? []), e.target]);
  }
  const seen = new Set<string>([from]);
  const queue: string[][] = [[from]];
  while (queue.length) {
    const path = queue.shift()!;
    const last = path[path.length - 1];
    if (last === to) {
      return path;
    }
    for (const n of next.get(last) ?? []) {
      if (!seen.has(n)) {
        seen.add(n);
        queue.push([...path, n]);
      }
    }
  }
  return null;
}

/** Why a new edge source -> target would be refused, or null if it is fine. */
export function checkConnect(
  nodes: SwarmNode[],
  edges: SwarmEdge[],
  source: string,
  target: string
): string | null {
  const src = nodes.find(n => n.id === source);
  const dst = nodes.find(n => n.id === target);
  if (!src || !dst) {
    return `unknown node ${!src ? source : target}`;
  }
  if (dst.kind === 'gateway') {
    return `gateway ${target} has no inputs: only bees listen to producers`;
  }
  if (source === target) {
    return `bee ${target} cannot listen to itself`;
  }
  if (inputsOf(edges, target).includes(source)) {
    return `bee ${target} already listens to ${source}`;
  }
  const back = pathBetween(edges, target, source);
  if (back) {
    return `refused: the swarm would have a cycle: ${[...back, target].join(' -> ')}`;
  }
  return null;
}

/** Why removing the edge source -> target would be refused, or null if it is fine. */
export function checkDisconnect(
  nodes: SwarmNode[],
  edges: SwarmEdge[],
  source: string,
  target: string
): string | null {
  const inputs = inputsOf(edges, target);
  if (!inputs.includes(source)) {
    return `bee ${target} does not listen to ${source}`;
  }
  const dst = nodes.find(n => n.id === target);
  if (dst && dst.kind === 'bee' && dst.join && inputs.length <= 2) {
    return `refused: join bee ${target} needs at least two inputs`;
  }
  if (inputs.length <= 1) {
    return `refused: bee ${target} needs at least one input`;
  }
  return null;
}

/** Why taking bee `bee` out would be refused (others listen to it), or null. */
export function checkRemove(edges: SwarmEdge[], bee: string): string | null {
  const listeners = edges.filter(e => e.source === bee).map(e => e.target);
  if (listeners.length) {
    return `refused: ${listeners.join(', ')} listen${listeners.length === 1 ? 's' : ''} to bee ${bee}: remove or disconnect ${listeners.length === 1 ? 'it' : 'them'} first`;
  }
  return null;
}

export function checkReplicas(value: number): string | null {
  if (!Number.isInteger(value) || value < 1 || value > MAX_REPLICAS) {
    return `replicas must be a whole number from 1 to ${MAX_REPLICAS}`;
  }
  return null;
}

export function formatRate(perSecond: number): string {
  if (perSecond >= 1000) {
    return `${(perSecond / 1000).toFixed(1)}k/s`;
  }
  return `${perSecond >= 10 ? perSecond.toFixed(0) : perSecond.toFixed(1)}/s`;
}

export function formatMs(ms: number): string {
  if (ms <= 0) {
    return '-';
  }
  if (ms < 1) {
    return `${(ms * 1000).toFixed(0)} µs`;
  }
  return ms < 100 ? `${ms.toFixed(1)} ms` : `${ms.toFixed(0)} ms`;
}
