"""The hub process: the bus proxy and the swarm's HTTP gateways."""
