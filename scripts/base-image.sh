#!/usr/bin/env bash
# Build a local base image for bee containers where no image registry answers (tests, CI).
# Debian bookworm's python3 is 3.11, the minor version the kernel must match.
# Usage: scripts/base-image.sh [TAG]   (default bytewax-nb-base:bookworm-py3.11)
set -euo pipefail
tag="${1:-bytewax-nb-base:bookworm-py3.11}"
if docker image inspect "$tag" >/dev/null 2>&1; then
    echo "$tag"
    exit 0
fi
command -v debootstrap >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; }
root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
debootstrap --variant=minbase --include=python3,python3-pip bookworm "$root" http://deb.debian.org/debian >/dev/null
tar -C "$root" -c . | docker import - "$tag" >/dev/null
echo "$tag"
