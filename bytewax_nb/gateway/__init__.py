"""The hub process: all of a swarm's HTTP gateways, and the producer of their requests:
`python -m bytewax_nb.gateway`, its boot line on stdin or its stack's secret.

Imports `model` and `bus`, aiohttp and prometheus_client; never IPython, docker or
ipywidgets.
"""
