import { describe, expect, it } from 'vitest';

import {
  BeeNode,
  GatewayNode,
  NODE_HEIGHT,
  NODE_WIDTH,
  SwarmEdge,
  SwarmNode,
  checkConnect,
  checkDisconnect,
  checkRemove,
  checkReplicas,
  formatMs,
  formatRate,
  frames,
  layout,
  structureKey
} from './graph';

function gateway(id: string): GatewayNode {
  return { id, kind: 'gateway', status: 'ready', url: null, rps: 0, errors: 0 };
}

function bee(id: string, join = false): BeeNode {
  return {
    id,
    kind: 'bee',
    status: 'ready',
    ready: 1,
    wanted: 1,
    rate: 0,
    p50_ms: 0,
    p99_ms: 0,
    errors: 0,
    deaths: 0,
    dropped: 0,
    batch: 1,
    join
  };
}

function edge(source: string, target: string, join = false): SwarmEdge {
  return { source, target, join };
}

// in -> a -> b -> c, and j joins a and b
const nodes: SwarmNode[] = [gateway('in'), bee('a'), bee('b'), bee('c'), bee('j', true)];
const edges: SwarmEdge[] = [
  edge('in', 'a'),
  edge('a', 'b'),
  edge('b', 'c'),
  edge('a', 'j', true),
  edge('b', 'j', true)
];

describe('checkConnect', () => {
  it('accepts a new edge that keeps the graph acyclic', () => {
    expect(checkConnect(nodes, edges, 'in', 'c')).toBeNull();
    expect(checkConnect(nodes, edges, 'a', 'c')).toBeNull();
  });

  it('refuses an edge that closes a cycle and names it', () => {
    expect(checkConnect(nodes, edges, 'c', 'a')).toBe(
      'refused: the swarm would have a cycle: a -> b -> c -> a'
    );
  });

  it('refuses an edge into a gateway', () => {
    expect(checkConnect(nodes, edges, 'a', 'in')).toMatch(/gateway in has no inputs/);
  });

  it('refuses a self loop, a duplicate and an unknown node', () => {
    expect(checkConnect(nodes, edges, 'a', 'a')).toMatch(/itself/);
    expect(checkConnect(nodes, edges, 'in', 'a')).toMatch(/already listens/);
    expect(checkConnect(nodes, edges, 'zz', 'a')).toMatch(/unknown node zz/);
  });
});

describe('checkDisconnect', () => {
  it('accepts removing one of several inputs', () => {
    const more = [...edges, edge('in', 'c')];
    expect(checkDisconnect(nodes, more, 'in', 'c')).toBeNull();
  });

  it('refuses removing the last input of a bee', () => {
    expect(checkDisconnect(nodes, edges, 'b', 'c')).toMatch(/at least one input/);
  });

  it('refuses taking a join below two inputs', () => {
    expect(checkDisconnect(nodes, edges, 'a', 'j')).toMatch(/join bee j needs at least two/);
  });

  it('refuses an edge that is not there', () => {
    expect(checkDisconnect(nodes, edges, 'in', 'c')).toMatch(/does not listen/);
  });
});

describe('checkRemove', () => {
  it('refuses a bee others listen to and names them', () => {
    const edges = [
      { source: 'in', target: 'a', join: false },
      { source: 'a', target: 'b', join: false }
    ];
    expect(checkRemove(edges, 'a')).toBe('refused: b listens to bee a: remove or disconnect it first');
    expect(checkRemove(edges, 'b')).toBeNull();
  });
});

describe('checkReplicas', () => {
  it('takes whole numbers in range only', () => {
    expect(checkReplicas(1)).toBeNull();
    expect(checkReplicas(8)).toBeNull();
    for (const bad of [0, -1, 1.5, Number.NaN, 65]) {
      expect(checkReplicas(bad)).toMatch(/whole number/);
    }
  });
});

describe('layout', () => {
  it('puts producers left of their consumers and nodes apart', () => {
    const pos = layout(nodes, edges);
    for (const e of edges) {
      expect(pos.get(e.source)!.x).toBeLessThan(pos.get(e.target)!.x);
    }
    const all = [...pos.values()];
    for (let i = 0; i < all.length; i++) {
      for (let k = i + 1; k < all.length; k++) {
        const apart =
          Math.abs(all[i].x - all[k].x) >= NODE_WIDTH || Math.abs(all[i].y - all[k].y) >= NODE_HEIGHT;
        expect(apart).toBe(true);
      }
    }
  });

  it('places a node that has no edges', () => {
    const pos = layout([gateway('lonely')], []);
    expect(pos.get('lonely')).toBeDefined();
  });
});

describe('frames', () => {
  it('draws one box around the bees of each fused chain, none for a bee alone', () => {
    const fused = nodes.map(n =>
      n.kind === 'bee' && (n.id === 'a' || n.id === 'b') ? { ...n, group: ['a', 'b'] } : n
    );
    const pos = layout(fused, edges);
    const boxes = frames(fused, pos);
    expect(boxes.map(f => f.bees)).toEqual([['a', 'b']]);
    const [box] = boxes;
    for (const b of ['a', 'b']) {
      const p = pos.get(b)!;
      expect(p.x).toBeGreaterThan(box.x);
      expect(p.y).toBeGreaterThan(box.y);
      expect(p.x + NODE_WIDTH).toBeLessThan(box.x + box.width);
      expect(p.y + NODE_HEIGHT).toBeLessThan(box.y + box.height);
    }
    expect(frames(nodes, pos)).toEqual([]);
  });
});

describe('structureKey', () => {
  it('ignores figures and order, sees edges and nodes change', () => {
    const busy = nodes.map(n => (n.kind === 'bee' ? { ...n, rate: 99 } : n));
    expect(structureKey(busy, [...edges].reverse())).toBe(structureKey(nodes, edges));
    expect(structureKey(nodes, [...edges, edge('in', 'c')])).not.toBe(structureKey(nodes, edges));
    expect(structureKey([...nodes, bee('d')], edges)).not.toBe(structureKey(nodes, edges));
  });
});

describe('formatting', () => {
  it('shows rates and latencies at a readable scale', () => {
    expect(formatRate(0)).toBe('0.0/s');
    expect(formatRate(12.4)).toBe('12/s');
    expect(formatRate(2500)).toBe('2.5k/s');
    expect(formatMs(0)).toBe('-');
    expect(formatMs(0.25)).toBe('250 µs');
    expect(formatMs(3.21)).toBe('3.2 ms');
    expect(formatMs(250)).toBe('250 ms');
  });
});
