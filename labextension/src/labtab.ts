/**
 * A swarm's graph in a JupyterLab tab: the widget's view (`app.tsx`) fed by a model
 * that reads the Jupyter server (`labserver`) instead of a kernel. The server knows the
 * swarm the way `bytewax-nb` does, so the tab draws swarms that any kernel or script of
 * this machine runs, and deployed stacks.
 */
import { Widget } from '@lumino/widgets';

import { SwarmModelLike, mount } from './app';
import { api } from './labapi';
import type { Edit, Kept, Message, Probe } from './state';

const INTERVAL = 1000; // ms between two reads of the swarm, as the widget's kernel side
const SAY_AFTER = 3; // failed reads in a row before the tab says why the graph is stale

function words(e: Edit): string {
  switch (e.type) {
    case 'connect':
      return `connect ${e.source} -> ${e.target}`;
    case 'disconnect':
      return `disconnect ${e.source} -> ${e.target}`;
    case 'replicas':
      return `${e.bee}: ${e.replicas} replicas`;
    case 'remove':
      return `remove bee ${e.bee}`;
    default:
      return e.type;
  }
}

/** The widget's model, kept by polling the server; edits are posted to it. */
export class RemoteModel implements SwarmModelLike {
  private values: Record<string, unknown>;
  private listeners = new Map<string, Set<() => void>>();
  private timer: number | null = null;
  private seq = 0;
  private failures = 0;
  private disposed = false;
  private reading = false;

  constructor(readonly id: string, name: string) {
    this.values = {
      swarm: name,
      running: false,
      nodes: [],
      edges: [],
      message: {},
      selected: '',
      detail: {},
      pending: '',
      probe: {},
      kept: { slow: [], failed: [] }
    };
    void this.refresh();
  }

  get(name: string): unknown {
    return this.values[name];
  }

  set(name: string, value: unknown): void {
    this.values[name] = value;
    for (const callback of this.listeners.get(`change:${name}`) ?? []) {
      callback();
    }
  }

  save_changes(): void {
    void this.refresh(); // the bee picked: its detail now, not in a second
  }

  on(event: string, callback: () => void): void {
    if (!this.listeners.has(event)) {
      this.listeners.set(event, new Set());
    }
    this.listeners.get(event)!.add(callback);
  }

  off(event: string, callback: () => void): void {
    this.listeners.get(event)?.delete(callback);
  }

  send(content: Edit): void {
    if (content.type === 'probe') {
      const seq = ++this.seq;
      const sent: Probe = { ...content, state: 'running', answer: '', error: '', trace: null, seq };
      this.set('probe', sent);
      api<Probe>(`${this.id}/probe`, { gateway: content.gateway, payload: content.payload })
        .then(p => this.set('probe', { ...p, seq }))
        .catch(e => this.set('probe', { ...sent, state: 'error', error: String(e.message ?? e) }));
    } else if (content.type === 'traces') {
      api<Kept>(`${this.id}/traces`)
        .then(k => this.set('kept', k))
        .catch(e => this.say('error', `could not read the kept traces: ${e.message ?? e}`));
    } else {
      const what = words(content);
      this.set('pending', what);
      api<Message>(`${this.id}/edit`, content)
        .then(m => this.say(m.level ?? 'info', m.text ?? ''))
        .catch(e => this.say('error', `refused: ${what}: ${e.message ?? e}`))
        .finally(() => {
          this.set('pending', '');
          void this.refresh();
        });
    }
  }

  say(level: 'info' | 'error', text: string): void {
    this.set('message', { text, level, seq: ++this.seq });
  }

  private async refresh(): Promise<void> {
    if (this.disposed || this.reading) {
      return;
    }
    this.reading = true;
    if (this.timer !== null) {
      window.clearTimeout(this.timer);
      this.timer = null;
    }
    try {
      const selected = encodeURIComponent(String(this.values.selected ?? ''));
      const shown = await api<Record<string, unknown>>(`${this.id}/view?selected=${selected}`);
      if (!this.disposed) {
        for (const [name, value] of Object.entries(shown)) {
          this.set(name, value);
        }
      }
      this.failures = 0;
    } catch (e) {
      this.failures += 1;
      if (this.failures === SAY_AFTER) {
        this.set('running', false);
        this.say('error', `could not read the swarm: ${(e as Error).message ?? e}`);
      }
    } finally {
      this.reading = false;
      if (!this.disposed) {
        this.timer = window.setTimeout(() => void this.refresh(), INTERVAL);
      }
    }
  }

  dispose(): void {
    this.disposed = true;
    if (this.timer !== null) {
      window.clearTimeout(this.timer);
    }
    this.listeners.clear();
  }
}

/** A tab id for a swarm id (ids hold a slash and dots). */
export function tabId(kind: string, id: string): string {
  return `bxnb-${kind}-${id.replace(/[^A-Za-z0-9_-]/g, '-')}`;
}

/** The live graph of one swarm, in a main-area tab. */
export class GraphTab extends Widget {
  readonly model: RemoteModel;
  private unmount: () => void;

  constructor(id: string, name: string) {
    super();
    this.id = tabId('graph', id);
    this.addClass('bxnb-lab-graph');
    this.node.dataset.swarm = id;
    this.title.label = `swarm ${name}`;
    this.title.caption = `The live graph of ${id}`;
    this.title.closable = true;
    this.model = new RemoteModel(id, name);
    this.unmount = mount(this.node, this.model);
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this.unmount();
    this.model.dispose();
    super.dispose();
  }
}

/** A bee's (or the gateways') last log lines, followed every two seconds. */
export class LogsTab extends Widget {
  private timer: number | null = null;
  private readonly pre: HTMLPreElement;

  constructor(
    private readonly swarm: string,
    name: string,
    private readonly bee: string
  ) {
    super();
    this.id = tabId('logs', `${swarm}-${bee}`);
    this.addClass('bxnb-lab-logs');
    this.node.dataset.swarm = swarm;
    this.node.dataset.bee = bee;
    this.title.label = `logs ${name}/${bee}`;
    this.title.closable = true;
    this.pre = document.createElement('pre');
    this.node.appendChild(this.pre);
    void this.read();
  }

  private async read(): Promise<void> {
    try {
      const { lines } = await api<{ lines: string[] }>(
        `${this.swarm}/logs/${encodeURIComponent(this.bee)}?lines=500`
      );
      const atEnd = this.node.scrollTop + this.node.clientHeight >= this.node.scrollHeight - 4;
      this.pre.textContent = lines.length ? lines.join('\n') : `(no output from ${this.bee} yet)`;
      this.pre.classList.remove('bxnb-error');
      if (atEnd) {
        this.node.scrollTop = this.node.scrollHeight;
      }
    } catch (e) {
      this.pre.textContent = `could not read the logs: ${(e as Error).message ?? e}`;
      this.pre.classList.add('bxnb-error');
    }
    if (!this.isDisposed) {
      this.timer = window.setTimeout(() => void this.read(), 2000);
    }
  }

  dispose(): void {
    if (this.timer !== null) {
      window.clearTimeout(this.timer);
    }
    super.dispose();
  }
}
