#!/usr/bin/env bash
# Regenerates bytewax_nb/gateway/oip/oip_pb2.py (the inference protocol's messages) from
# oip.proto. grpcio-tools 1.76 writes protobuf 6.31 gencode, which runs on every
# protobuf >= 6.31 and < 7 (what the grpc extra allows); it is installed apart, in a
# temporary folder, so nothing else changes.
set -euo pipefail
cd "$(dirname "$0")/../bytewax_nb/gateway/oip"
tools="$(mktemp -d)"
trap 'rm -rf "$tools"' EXIT
python3 -m pip install -q --target "$tools" "grpcio-tools==1.76.0"
PYTHONPATH="$tools" python3 -m grpc_tools.protoc -I. --python_out=. --pyi_out=. oip.proto
