/**
 * The side panel's plugin: the panel in the left area, and the commands it and the
 * command palette run (open a swarm's graph or a bee's logs in a tab, stop a swarm or
 * undeploy a stack, attach the current notebook to a stack). JupyterLab only: it
 * needs Lab's shell (Notebook 7 draws the widget under cells, as every front-end does).
 */
import { ILabShell, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import {
  Dialog,
  ICommandPalette,
  InputDialog,
  Notification,
  showDialog,
  showErrorMessage
} from '@jupyterlab/apputils';
import { INotebookTracker, NotebookActions } from '@jupyterlab/notebook';
import { LabIcon } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';

import { api, label, listSwarms } from './labapi';
import { SwarmsPanel } from './labpanel';
import { GraphTab, LogsTab } from './labtab';
import type { Listed, Message } from './state';

const swarmIcon = new LabIcon({
  name: 'bytewax-nb:swarm',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24"><g class="jp-icon3" fill="#616161">' +
    '<path d="M12 2 20.7 7v10L12 22 3.3 17V7z" fill="none" stroke="#616161" stroke-width="2"/>' +
    '<circle cx="12" cy="8" r="2"/><circle cx="8" cy="15" r="2"/><circle cx="16" cy="15" r="2"/></g></svg>'
});

const CATEGORY = 'bytewax-nb';

/** The swarm a command is about: its `id` argument, else the user's pick. */
async function pick(args: Record<string, unknown>, title: string, only?: (r: Listed) => boolean): Promise<Listed | null> {
  const rows = (await listSwarms()).filter(only ?? (() => true));
  if (typeof args.id === 'string') {
    const row = rows.find(r => r.id === args.id);
    if (!row) {
      await showErrorMessage(title, `${args.id} is not running any more`);
    }
    return row ?? null;
  }
  if (rows.length === 0) {
    await showErrorMessage(title, only ? 'No deployed stack is running.' : 'No swarm runs on this machine.');
    return null;
  }
  const labels = rows.map(label);
  const chosen = await InputDialog.getItem({ title, items: labels, current: 0 });
  return chosen.button.accept && chosen.value !== null ? rows[labels.indexOf(chosen.value)] ?? null : null;
}

function show(app: JupyterFrontEnd, tab: Widget): void {
  const open = Array.from(app.shell.widgets('main')).find(w => w.id === tab.id);
  if (open) {
    tab.dispose();
    app.shell.activateById(open.id);
    return;
  }
  app.shell.add(tab, 'main');
  app.shell.activateById(tab.id);
}

function activate(
  app: JupyterFrontEnd,
  shell: ILabShell,
  palette: ICommandPalette | null,
  notebooks: INotebookTracker | null
): void {
  const { commands } = app;
  const panel = new SwarmsPanel(commands);
  panel.title.icon = swarmIcon;
  shell.add(panel, 'left', { rank: 900 });

  commands.addCommand('bytewax-nb:show-panel', {
    label: 'Show the swarms of this machine',
    execute: () => shell.activateById(panel.id)
  });
  commands.addCommand('bytewax-nb:open-graph', {
    label: "Open a swarm's live graph",
    execute: async args => {
      const row = await pick(args, "Open a swarm's live graph");
      if (row) {
        show(app, new GraphTab(row.id, row.name));
      }
    }
  });
  commands.addCommand('bytewax-nb:logs', {
    label: "Open a bee's logs",
    execute: async args => {
      const row = await pick(args, "Open a bee's logs");
      if (!row) {
        return;
      }
      let bee = typeof args.bee === 'string' ? args.bee : null;
      if (bee === null) {
        const items = [...row.bees.map(b => b.name), 'hub'];
        const chosen = await InputDialog.getItem({ title: `Logs of ${label(row)}`, items, current: 0 });
        bee = chosen.button.accept ? chosen.value : null;
      }
      if (bee) {
        show(app, new LogsTab(row.id, row.name, bee));
      }
    }
  });
  commands.addCommand('bytewax-nb:stop', {
    label: 'Stop a swarm (or undeploy a stack)',
    execute: async args => {
      const row = await pick(args, 'Stop a swarm');
      if (!row) {
        return;
      }
      const stack = row.kind === 'stack';
      const sure = await showDialog({
        title: stack ? `Undeploy stack ${row.name}?` : `Stop swarm ${row.name}?`,
        body: stack
          ? 'Every service, network, secret and config of the stack is removed (what `bytewax-nb undeploy` does).'
          : `Its owner (pid ${row.owner}) drains the requests in flight and stops its processes.`,
        buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: stack ? 'Undeploy' : 'Stop' })]
      });
      if (!sure.button.accept) {
        return;
      }
      try {
        const said = await api<Message>(`${row.id}/stop`, {});
        Notification.success(said.text ?? 'stopped', { autoClose: 5000 });
      } catch (e) {
        await showErrorMessage(`Stop ${label(row)}`, (e as Error).message ?? String(e));
      }
    }
  });
  commands.addCommand('bytewax-nb:attach', {
    label: 'Attach this notebook to a deployed stack',
    execute: async args => {
      const notebook = notebooks?.currentWidget;
      if (!notebook) {
        await showErrorMessage('Attach to a stack', 'Open the notebook to attach first.');
        return;
      }
      const row = await pick(args, 'Attach this notebook to a deployed stack', r => r.kind === 'stack');
      if (!row) {
        return;
      }
      NotebookActions.insertBelow(notebook.content);
      const cell = notebook.content.activeCell;
      cell?.model.sharedModel.setSource(
        `from bytewax_nb import Swarm\n\nswarm = Swarm.attach(${JSON.stringify(row.name)})\nswarm.widget()`
      );
      await NotebookActions.run(notebook.content, notebook.sessionContext);
      app.shell.activateById(notebook.id);
    }
  });
  if (palette) {
    for (const command of [
      'bytewax-nb:show-panel',
      'bytewax-nb:open-graph',
      'bytewax-nb:logs',
      'bytewax-nb:stop',
      'bytewax-nb:attach'
    ]) {
      palette.addItem({ command, category: CATEGORY });
    }
  }
}

export const panelPlugin: JupyterFrontEndPlugin<void> = {
  id: 'bytewax-nb-widget:panel',
  description: "This machine's swarms and deployed stacks: a side panel, graph and logs tabs, commands",
  requires: [ILabShell],
  optional: [ICommandPalette, INotebookTracker],
  autoStart: true,
  activate
};

