/** The JupyterLab plugins: the Swarm widget registered with the widget manager (for
 * notebooks saved with its earlier model), and the side panel of this machine's swarms. */
import { IJupyterWidgetRegistry } from '@jupyter-widgets/base';
import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';

import { panelPlugin } from './labcommands';
import { MODULE_NAME, MODULE_VERSION, SwarmModel, SwarmView } from './widget';

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'bytewax-nb-widget:plugin',
  description: 'The live Swarm graph of bytewax-nb',
  requires: [IJupyterWidgetRegistry],
  autoStart: true,
  activate: (_app: JupyterFrontEnd, registry: IJupyterWidgetRegistry): void => {
    registry.registerWidget({
      name: MODULE_NAME,
      version: MODULE_VERSION,
      exports: { SwarmModel, SwarmView }
    });
  }
};

export default [plugin, panelPlugin];
