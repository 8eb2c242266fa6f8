"""The notebook's side: the magics, the live graph widget and its state, the live output
under a cell.

Runs in a Jupyter kernel. Imports the public API (`bytewax_nb.swarm`) and everything
below it, IPython and ipywidgets.
"""
