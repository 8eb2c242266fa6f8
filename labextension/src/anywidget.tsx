/**
 * The Swarm widget as an anywidget: this module is bundled (React and React Flow in it)
 * into the Python package, which hands it to whatever front-end shows the widget:
 * JupyterLab, Notebook 7, VS Code, Colab, marimo. Nothing is fetched from a CDN.
 */
import { SwarmModelLike, mount } from './app';

interface RenderProps {
  model: SwarmModelLike;
  el: HTMLElement;
}

export default {
  render({ model, el }: RenderProps): () => void {
    return mount(el, model);
  }
};
