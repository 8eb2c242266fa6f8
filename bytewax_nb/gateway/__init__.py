"""The hub process: the swarm's HTTP gateways and the producer of their requests."""
