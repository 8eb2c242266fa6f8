"""Deployed swarms: a notebook's swarm as a stack on a Docker Swarm mode cluster.

The engine runs the processes (one service per bee, the hub, a controller); the
controller is the supervisor of one machine turned around: processes register with it
and prove they are alive with heartbeats, instead of being children it launched.
See docs/deploying.md.
"""
