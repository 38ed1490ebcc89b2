#!/bin/sh
# Builds Cairn's image from the Containerfile (`make image`): first the local
# Debian base (scripts/base-image.sh, only when missing), then the two stages.
# Unchanged sources reuse every cached layer, so a second run takes seconds.
#
# The flags are what a podman 4.3 without crun and without CAP_SYS_RESOURCE
# needs (docs/deployment.md): runc, explicit ulimits at or below the hard
# limits, the host network for apt inside the build, and the docker format,
# the only one that keeps HEALTHCHECK.
#
# usage: scripts/image.sh [IMAGE]   (default localhost/cairn:latest)
set -eu
IMAGE="${1:-localhost/cairn:latest}"
here=$(cd "$(dirname "$0")/.." && pwd)

sh "$here/scripts/base-image.sh"
nofile=$(ulimit -Hn); nproc=$(ulimit -Hp 2>/dev/null || ulimit -Hu)
[ "$nofile" = unlimited ] || [ "$nofile" -gt 4096 ] && nofile=4096
[ "$nproc" = unlimited ] || [ "$nproc" -gt 4096 ] && nproc=4096
podman build --runtime runc --network host --format docker \
  --ulimit "nofile=$nofile:$nofile" --ulimit "nproc=$nproc:$nproc" \
  --layers -f "$here/Containerfile" -t "$IMAGE" "$here"
echo "image: $IMAGE, $(podman image inspect --format '{{.Size}}' "$IMAGE") bytes" >&2
