#!/usr/bin/env bash
# Put this machine's Docker engine in Swarm mode (one manager node) for the stack tests,
# advertising an address that a second engine in a network namespace can reach (the
# two-node tests start one): a veth pair whose host end is 10.77.0.1. Idempotent; says
# what it found and what it did.
#
#   scripts/swarm-init.sh            keep a swarm this engine is in already, whatever it advertises
#   scripts/swarm-init.sh --reinit   leave such a swarm and make a new one on 10.77.0.1 (its
#                                    services, secrets and nodes are lost: for test machines)
set -euo pipefail
NS=bytewax-nb-node2
ADDR=10.77.0.1
reinit=no
[ "${1:-}" = "--reinit" ] && reinit=yes

if [ "$(id -u)" != 0 ]; then
    echo "swarm-init: needs root (it makes a network namespace and a veth pair)" >&2
    exit 1
fi
for tool in ip iptables docker; do
    command -v "$tool" >/dev/null || {
        echo "swarm-init: '$tool' is missing (apt-get install iproute2 iptables docker.io)" >&2
        exit 1
    }
done

if ! ip link show bxnb-host >/dev/null 2>&1; then
    ip netns add "$NS" 2>/dev/null || true
    ip link add bxnb-host type veth peer name bxnb-node
    ip link set bxnb-node netns "$NS"
    ip addr add "$ADDR/24" dev bxnb-host
    ip link set bxnb-host up
    ip netns exec "$NS" ip addr add 10.77.0.2/24 dev bxnb-node
    ip netns exec "$NS" ip link set bxnb-node up
    ip netns exec "$NS" ip link set lo up
    ip netns exec "$NS" ip route add default via "$ADDR"
    echo "swarm-init: made network namespace $NS (10.77.0.2) and its link to this host ($ADDR)"
fi
# the namespace reaches what the host reaches (its DNS answers, or fails, as fast as the
# host's: an engine there looking up a registry must not wait for a timeout)
iptables -t nat -C POSTROUTING -s 10.77.0.0/24 ! -o bxnb-host -j MASQUERADE 2>/dev/null ||
    iptables -t nat -A POSTROUTING -s 10.77.0.0/24 ! -o bxnb-host -j MASQUERADE
for dir in -i -o; do
    iptables -C FORWARD "$dir" bxnb-host -j ACCEPT 2>/dev/null || iptables -I FORWARD "$dir" bxnb-host -j ACCEPT
done

state="$(docker info --format '{{.Swarm.LocalNodeState}}')"
if [ "$state" = "active" ]; then
    found="$(docker info --format '{{.Swarm.NodeAddr}}')"
    manager="$(docker info --format '{{.Swarm.ControlAvailable}}')"
    if [ "$found" = "$ADDR" ] && [ "$manager" = "true" ]; then
        echo "swarm-init: this engine is a swarm manager on $ADDR already: kept"
    elif [ "$reinit" = yes ]; then
        echo "swarm-init: this engine is in a swarm on $found (manager: $manager): leaving it (--reinit)"
        docker swarm leave --force >/dev/null
        state=inactive
    else
        echo "swarm-init: this engine is in a swarm already, on $found (manager: $manager): kept as it is."
        [ "$manager" = "true" ] || echo "  Not a manager: the stack tests cannot deploy here."
        echo "  The two-node tests will skip: a second engine in $NS reaches this host on $ADDR only."
        echo "  To run them: scripts/swarm-init.sh --reinit (leaves that swarm: its services are lost)."
    fi
fi
if [ "$state" != "active" ]; then
    docker swarm init --advertise-addr "$ADDR" >/dev/null
    echo "swarm-init: made this engine a swarm manager on $ADDR"
fi
docker info --format 'swarm: {{.Swarm.LocalNodeState}}, node {{.Swarm.NodeAddr}}'
