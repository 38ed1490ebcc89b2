#!/bin/sh
# Installs the Debian packages Cairn needs to build, test and benchmark, and only
# those that are missing, so that `make run` and `make test` work on a fresh machine.
set -eu

BUILD_PKGS="build-essential cmake pkg-config libuv1-dev node-llhttp libmbedtls-dev libcrypt-dev \
libzstd-dev libyajl-dev libxml2-dev zlib1g-dev libssl-dev libarchive-dev libisal-dev libsystemd-dev \
libfuse3-dev fuse3"
# clang builds the fuzz targets; libclang-rt-14-dev holds libFuzzer and the
# sanitizer runtimes (only recommended by clang), llvm-14 the symbolizer.
TEST_PKGS="curl python3 python3-botocore python3-boto3 openssl ceph-mon ceph-osd radosgw ceph-common nginx-light \
clang libclang-rt-14-dev llvm-14 prometheus"
BENCH_PKGS="nginx-light wrk restic rclone rsync"
# `make image` and the image tests: podman with runc (Debian's podman 4.3 has
# no crun here), mmdebstrap for the local base image, systemd-analyze for the
# unit files (docs/deployment.md).
CONTAINER_PKGS="podman runc catatonit mmdebstrap uidmap slirp4netns systemd"

want="$BUILD_PKGS"
case "${1:-build}" in
  build) ;;
  test)  want="$want $TEST_PKGS $CONTAINER_PKGS" ;;
  bench) want="$want $TEST_PKGS $BENCH_PKGS" ;;
  image) want="$CONTAINER_PKGS" ;;
  *) echo "usage: $0 [build|test|bench|image]" >&2; exit 2 ;;
esac

missing=""
for p in $want; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
    || missing="$missing $p"
done
[ -z "$missing" ] && exit 0

echo "deps: installing$missing" >&2
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
apt_install() {
  $SUDO apt-get "$@" update -qq &&
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get "$@" install -y -qq --no-install-recommends $missing
}
# apt downloads as the unprivileged _apt user; in some sandboxes that user
# cannot resolve names while root can, so a failed run is retried as root.
apt_install || { echo "deps: retrying with apt's download sandbox off" >&2;
                 apt_install -o APT::Sandbox::User=root; }
