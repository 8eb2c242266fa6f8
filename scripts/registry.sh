#!/usr/bin/env bash
# An image registry on this machine for the swarm's nodes (Debian's docker-registry):
# listens on the swarm's host address, 10.77.0.1:5000 (scripts/swarm-init.sh), plain
# HTTP, so each engine must list it with --insecure-registry (.ci/run starts dockerd so,
# scripts/second-node.sh the second engine). `deploy --registry 10.77.0.1:5000` pushes there.
#
#   scripts/registry.sh start | stop
set -euo pipefail
ADDR=10.77.0.1:5000
DIR=/var/lib/bytewax-nb-registry
up() { curl -fsS "http://$ADDR/v2/" >/dev/null 2>&1; }

case "${1:-start}" in
start)
    up && exit 0
    mkdir -p "$DIR"
    cat >"$DIR/config.yml" <<EOF
version: 0.1
storage:
  filesystem:
    rootdirectory: $DIR/data
  delete:
    enabled: true
http:
  addr: $ADDR
EOF
    docker-registry serve "$DIR/config.yml" >/var/log/bytewax-nb-registry.log 2>&1 &
    echo $! >"$DIR/pid"
    for _ in $(seq 100); do up && exit 0; sleep 0.1; done
    tail -20 /var/log/bytewax-nb-registry.log >&2
    exit 1
    ;;
stop)
    [ -f "$DIR/pid" ] && kill "$(cat "$DIR/pid")" 2>/dev/null || true
    rm -f "$DIR/pid"
    ;;
*)
    echo "usage: $0 start|stop" >&2
    exit 2
    ;;
esac
