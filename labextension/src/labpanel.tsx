/**
 * The side panel: this machine's swarms (any kernel's or script's) and the deployed
 * stacks, read from the Jupyter server every two seconds while the panel is shown;
 * each row opens the swarm's graph or logs, stops it, or attaches a notebook to a stack.
 */
import { ReactWidget } from '@jupyterlab/apputils';
import { CommandRegistry } from '@lumino/commands';
import { useEffect, useState } from 'react';

import { listSwarms } from './labapi';
import type { Listed } from './state';

const INTERVAL = 2000;

function Row({ row, commands }: { row: Listed; commands: CommandRegistry }): JSX.Element {
  const usable = row.state !== 'owner dead' && row.state !== 'not answering';
  const run = (command: string): void => void commands.execute(command, { id: row.id });
  return (
    <li className="bxnb-lab-swarm" data-id={row.id} data-state={row.state}>
      <div className="bxnb-lab-head">
        <span className="bxnb-lab-name">{row.name}</span>
        <span className="bxnb-lab-where">
          {row.kind === 'stack' ? 'deployed stack' : `${row.runtime}, owner ${row.owner}`}
        </span>
        <span className={`bxnb-lab-state bxnb-lab-${row.state.replace(/ /g, '-')}`}>{row.state}</span>
      </div>
      {row.error ? <div className="bxnb-lab-error">{row.error}</div> : null}
      <ul className="bxnb-lab-gateways">
        {row.gateways.map(g => (
          <li key={g.name} data-gateway={g.name}>
            gateway {g.name}{' '}
            {g.url ? (
              <a href={g.url} target="_blank" rel="noreferrer">
                {g.url}
              </a>
            ) : null}
          </li>
        ))}
      </ul>
      <ul className="bxnb-lab-bees">
        {row.bees.map(b => (
          <li key={b.name} data-bee={b.name}>
            bee {b.name}{' '}
            <span className="bxnb-lab-replicas">
              {b.ready}/{b.wanted} replicas
            </span>{' '}
            {b.state ? <span className={`bxnb-lab-bee-${b.state}`}>{b.state}</span> : null}
          </li>
        ))}
      </ul>
      <div className="bxnb-lab-actions">
        <button className="bxnb-lab-open" disabled={!usable} onClick={() => run('bytewax-nb:open-graph')}>
          Graph
        </button>
        <button className="bxnb-lab-logs-open" disabled={!usable} onClick={() => run('bytewax-nb:logs')}>
          Logs
        </button>
        {row.kind === 'stack' ? (
          <button className="bxnb-lab-attach" onClick={() => run('bytewax-nb:attach')}>
            Attach
          </button>
        ) : null}
        <button className="bxnb-lab-stop" disabled={!usable} onClick={() => run('bytewax-nb:stop')}>
          {row.kind === 'stack' ? 'Undeploy' : 'Stop'}
        </button>
      </div>
    </li>
  );
}

function SwarmList({ commands, shown }: { commands: CommandRegistry; shown: () => boolean }): JSX.Element {
  const [rows, setRows] = useState<Listed[] | null>(null);
  const [error, setError] = useState('');
  useEffect(() => {
    let alive = true;
    let timer = 0;
    const tick = async (): Promise<void> => {
      if (shown()) {
        try {
          const listed = await listSwarms();
          if (alive) {
            setRows(listed);
            setError('');
          }
        } catch (e) {
          if (alive) {
            setError((e as Error).message ?? String(e));
          }
        }
      }
      if (alive) {
        timer = window.setTimeout(() => void tick(), INTERVAL);
      }
    };
    void tick();
    return () => {
      alive = false;
      window.clearTimeout(timer);
    };
  }, []);
  return (
    <div className="bxnb-lab-panel">
      <h2 className="bxnb-lab-title">Swarms</h2>
      {error ? <div className="bxnb-lab-error">{error}</div> : null}
      {rows === null ? <p className="bxnb-lab-empty">reading…</p> : null}
      {rows !== null && rows.length === 0 ? (
        <p className="bxnb-lab-empty">
          No swarm runs on this machine and no stack is deployed. Start one in a notebook
          (<code>swarm.start()</code>) or with <code>bytewax-nb run</code>.
        </p>
      ) : null}
      <ul className="bxnb-lab-swarms">
        {(rows ?? []).map(r => (
          <Row key={r.id} row={r} commands={commands} />
        ))}
      </ul>
    </div>
  );
}

/** The panel as a Lumino widget for the left area. */
export class SwarmsPanel extends ReactWidget {
  constructor(private readonly commands: CommandRegistry) {
    super();
    this.id = 'bxnb-lab-swarms';
    this.addClass('bxnb-lab-sidebar');
    this.title.caption = 'Swarms';
  }

  render(): JSX.Element {
    return <SwarmList commands={this.commands} shown={() => this.isVisible} />;
  }
}
