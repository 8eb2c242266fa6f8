"""The owner's side: the supervisor that launches a swarm's processes (or, as a stack's
controller, adopts the tasks the engine started), wires them, proves them ready, keeps
them alive, applies changes and stops them, with its bookkeeping in pure parts beside it.

Runs in the owner (a kernel, a script, `bytewax-nb run`) and in a stack's controller.
Imports `model`, `bus` and `runtime`; never IPython or ipywidgets.
"""
