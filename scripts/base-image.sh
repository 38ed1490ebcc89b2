#!/bin/sh
# Builds the local base image the Containerfile starts from
# (localhost/debian:bookworm), from Debian's packages with mmdebstrap: no
# registry is needed, only a Debian mirror. Minimal on purpose: no docs, man
# pages, locales or info files, no apt package lists or caches (a build stage
# runs its own `apt-get update` and the runtime stage never needs apt lists).
# Does nothing when the image already exists (FORCE=1 rebuilds it).
#
# usage: scripts/base-image.sh [IMAGE]   (default localhost/debian:bookworm)
set -eu

IMAGE="${1:-localhost/debian:bookworm}"
SUITE=bookworm
# The mirror the image's apt uses (later `apt-get install` in the build stage).
MIRROR="${CAIRN_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SECURITY="${CAIRN_DEBIAN_SECURITY:-http://deb.debian.org/debian-security}"

if [ "${FORCE:-0}" != 1 ] && podman image exists "$IMAGE"; then
  exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

echo "base-image: bootstrapping $IMAGE with mmdebstrap" >&2
# Several sources as one argument each: mmdebstrap takes full deb lines.
mmdebstrap --quiet --variant=minbase --format=tar \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-exclude=/usr/share/info/*' \
  --dpkgopt='path-exclude=/usr/share/lintian/*' \
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/* "$1"/var/log/*.log "$1"/var/log/apt/*' \
  "$SUITE" "$tmp/base.tar" \
  "deb $MIRROR $SUITE main" \
  "deb $MIRROR $SUITE-updates main" \
  "deb $SECURITY $SUITE-security main"
podman import --quiet "$tmp/base.tar" "$IMAGE" >/dev/null
echo "base-image: $IMAGE ($(podman image inspect --format '{{.Size}}' "$IMAGE") bytes)" >&2
