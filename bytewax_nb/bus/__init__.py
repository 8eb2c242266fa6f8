"""The wire every process shares: signed frames, CurveZMQ keys, the control channel,
links seen from the producer's side and from the consumer's, and a process's boot.

Runs in every process the swarm starts and in its owner. Imports `model`, pyzmq,
cloudpickle and blake3; never IPython, docker, aiohttp or ipywidgets (a bee's image has
none of them).
"""
