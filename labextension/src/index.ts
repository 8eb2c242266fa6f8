/** The JupyterLab plugin: registers the Swarm widget with the widget manager. */
import { IJupyterWidgetRegistry } from '@jupyter-widgets/base';
import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';

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

export default plugin;
