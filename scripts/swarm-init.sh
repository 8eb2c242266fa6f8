#!/usr/bin/env bash
# Put this machine's Docker engine in Swarm mode (one manager node), advertising an
# address a second engine in a network namespace can reach (tests/test_stack_nodes.py
# starts one): a veth pair whose host end is 10.77.0.1. Idempotent.
set -euo pipefail
NS=bytewax-nb-node2
if ! ip link show bxnb-host >/dev/null 2>&1; then
    ip netns add "$NS" 2>/dev/null || true
    ip link add bxnb-host type veth peer name bxnb-node
    ip link set bxnb-node netns "$NS"
    ip addr add 10.77.0.1/24 dev bxnb-host
    ip link set bxnb-host up
    ip netns exec "$NS" ip addr add 10.77.0.2/24 dev bxnb-node
    ip netns exec "$NS" ip link set bxnb-node up
    ip netns exec "$NS" ip link set lo up
    ip netns exec "$NS" ip route add default via 10.77.0.1
fi
# the namespace reaches what the host reaches (its DNS answers, or fails, as fast as the
# host's: an engine there looking up a registry must not wait for a timeout)
iptables -t nat -C POSTROUTING -s 10.77.0.0/24 ! -o bxnb-host -j MASQUERADE 2>/dev/null ||
    iptables -t nat -A POSTROUTING -s 10.77.0.0/24 ! -o bxnb-host -j MASQUERADE
for dir in -i -o; do
    iptables -C FORWARD "$dir" bxnb-host -j ACCEPT 2>/dev/null || iptables -I FORWARD "$dir" bxnb-host -j ACCEPT
done
state="$(docker info --format '{{.Swarm.LocalNodeState}}')"
if [ "$state" != "active" ]; then
    docker swarm init --advertise-addr 10.77.0.1 >/dev/null
fi
docker info --format 'swarm: {{.Swarm.LocalNodeState}}, node {{.Swarm.NodeAddr}}'
