"""What runs inside one bee replica (a subprocess, a container, a stack's task):
`python -m bytewax_nb.replica`, its boot line on stdin or its stack's secret.

Imports `model` and `bus` only, and from outside pyzmq, cloudpickle and blake3 (what
every bee image has): never IPython, docker, aiohttp or ipywidgets.
"""
