/**
 * The Swarm widget as an ipywidgets model and view, registered by the lab extension so
 * that notebooks saved with the widget's earlier model still draw it. New widgets are
 * anywidgets (`anywidget.tsx`); both draw the same view (`app.tsx`).
 */
import { DOMWidgetModel, DOMWidgetView, ISerializers } from '@jupyter-widgets/base';

import { SwarmModelLike, mount } from './app';
import { VERSION } from './version';

export const MODULE_NAME = 'bytewax-nb-widget';
export const MODULE_VERSION = VERSION; // package.json's, as the Python package's

export class SwarmModel extends DOMWidgetModel {
  defaults(): ReturnType<DOMWidgetModel['defaults']> {
    return {
      ...super.defaults(),
      _model_name: 'SwarmModel',
      _model_module: MODULE_NAME,
      _model_module_version: MODULE_VERSION,
      _view_name: 'SwarmView',
      _view_module: MODULE_NAME,
      _view_module_version: MODULE_VERSION,
      swarm: '',
      running: false,
      nodes: [],
      edges: [],
      message: {},
      selected: '',
      detail: {},
      pending: ''
    };
  }

  static serializers: ISerializers = { ...DOMWidgetModel.serializers };
}

export class SwarmView extends DOMWidgetView {
  private _unmount: (() => void) | null = null;

  render(): void {
    const model = this.model;
    const synced: SwarmModelLike = {
      get: name => model.get(name),
      set: (name, value) => model.set(name, value),
      save_changes: () => model.save_changes(),
      send: content => model.send(content as unknown as {}, {}),
      on: (event, callback) => model.on(event, callback),
      off: (event, callback) => model.off(event, callback)
    };
    this._unmount = mount(this.el, synced);
  }

  remove(): void {
    this._unmount?.();
    this._unmount = null;
    super.remove();
  }
}
