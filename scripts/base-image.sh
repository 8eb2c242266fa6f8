#!/usr/bin/env bash
# Build a local base image for bee containers where no image registry answers (tests, CI).
# Debian bookworm's python3 is 3.11, the minor version the kernel must match. Packages
# come from the Debian mirror this machine's apt already uses (or $DEBIAN_MIRROR).
# Usage: scripts/base-image.sh [TAG]   (default bytewax-nb-base:bookworm-py3.11); prints the tag
set -euo pipefail
tag="${1:-bytewax-nb-base:bookworm-py3.11}"
if docker image inspect "$tag" >/dev/null 2>&1; then
    echo "$tag"
    exit 0
fi

mirror() {
    # deb822 sources (Debian 12's default), then one-line sources: the first Debian mirror
    local found=""
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        found="$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' "$f")"
        [ -n "$found" ] && break
    done
    if [ -z "$found" ]; then
        found="$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
            awk '$1 == "deb" && $0 ~ /debian/ && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) {print $i; exit}}')"
    fi
    echo "$found"
}

source="${DEBIAN_MIRROR:-$(mirror)}"
if [ -z "$source" ]; then
    echo "base-image: no Debian mirror in this machine's apt sources; set DEBIAN_MIRROR=URL" >&2
    exit 1
fi
command -v debootstrap >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; }
root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
debootstrap --variant=minbase --include=python3,python3-pip bookworm "$root" "$source" >/dev/null
tar -C "$root" -c . | docker import - "$tag" >/dev/null
echo "$tag"
