#!/usr/bin/env bash
# A second Docker engine on this machine, joined to its swarm as a worker: two nodes on
# one machine (tests/test_stack_nodes.py). It runs in the network namespace that
# swarm-init.sh made (10.77.0.2, a veth pair to the host's 10.77.0.1) with its own
# data root, exec root, socket and hostname. Images reach it by `docker save | load`.
#
#   scripts/second-node.sh start    start it and join it (idempotent); prints its node id
#   scripts/second-node.sh load IMAGE...    copy images from this engine to it
#   scripts/second-node.sh stop     leave the swarm, remove the node, stop the engine
set -euo pipefail
NS=bytewax-nb-node2
NAME=bytewax-nb-node2
SOCK=/var/run/docker2.sock
NODE2=(docker -H "unix://$SOCK")

up() { "${NODE2[@]}" info >/dev/null 2>&1; }
running() { [ -f /var/run/docker2.pid ] && kill -0 "$(cat /var/run/docker2.pid)" 2>/dev/null; }

case "${1:-start}" in
start)
    "$(dirname "$0")/swarm-init.sh" >/dev/null
    for _ in $(seq 120); do up || ! running || break; sleep 0.5; done  # one stopping still
    if ! up; then
        mkdir -p /var/lib/docker2 /var/run/docker2
        # its own UTS namespace too: the node's hostname is its name in `docker node ls`
        nsenter --net="/var/run/netns/$NS" unshare --uts sh -c "hostname $NAME; exec dockerd \
            --data-root /var/lib/docker2 --exec-root /var/run/docker2 -H unix://$SOCK \
            --pidfile /var/run/docker2.pid --cgroup-parent docker2 --bridge none \
            --iptables=false --insecure-registry 10.77.0.1:5000" >/var/log/bytewax-nb-node2.log 2>&1 &
        for _ in $(seq 120); do up && break; sleep 0.5; done
        up || { tail -20 /var/log/bytewax-nb-node2.log >&2; exit 1; }
    fi
    state="$("${NODE2[@]}" info --format '{{.Swarm.LocalNodeState}}')"
    if [ "$state" != "active" ] && [ "$state" != "inactive" ]; then
        # pending or in error: the node an earlier run joined is gone from the swarm
        "${NODE2[@]}" swarm leave --force >/dev/null
        state=inactive
    fi
    if [ "$state" != "active" ]; then
        # a node of that name left over from an earlier run is down: forget it first
        for id in $(docker node ls --filter "name=$NAME" --format '{{.ID}} {{.Status}}' | awk '$2=="Down"{print $1}'); do
            docker node rm --force "$id" >/dev/null
        done
        "${NODE2[@]}" swarm join --token "$(docker swarm join-token -q worker)" \
            --advertise-addr 10.77.0.2 10.77.0.1:2377 >/dev/null
    fi
    "${NODE2[@]}" info --format '{{.Swarm.NodeID}}'
    ;;
load)
    shift
    docker save "$@" | "${NODE2[@]}" load -q
    ;;
stop)
    if up; then
        id="$("${NODE2[@]}" info --format '{{.Swarm.NodeID}}')"
        "${NODE2[@]}" swarm leave --force >/dev/null 2>&1 || true
        [ -n "$id" ] && docker node rm --force "$id" >/dev/null 2>&1 || true
        kill "$(cat /var/run/docker2.pid)" 2>/dev/null || true
    fi
    for _ in $(seq 120); do running || break; sleep 0.5; done
    ;;
*)
    echo "usage: $0 start|load IMAGE...|stop" >&2
    exit 2
    ;;
esac
