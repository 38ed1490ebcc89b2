#!/bin/sh
# Runs inside the Containerfile's build stage: lays out the runtime image's
# whole file system under ROOT, which the final stage copies onto an empty
# image. Only what the programs need: the three binaries (stripped), the
# shared libraries they load (their ldd closure, with the sonames as links
# as Debian has them) and those packages' copyright files, the CA bundle
# (for S3 endpoints), and passwd/group files naming the non-root `cairn`
# user, and dash as /bin/sh. No package manager and no other tools: a small
# image with little to patch.
#
# usage: image-rootfs.sh BINDIR ROOT UID
set -eu
bin=$1 root=$2 uid=$3
progs="cairnd cairn-admin cairn"

mkdir -p "$root/usr/bin" "$root/usr/lib" "$root/usr/sbin" "$root/etc/ssl/certs" \
         "$root/usr/share/doc" "$root/tmp"
chmod 1777 "$root/tmp"
# Debian 12's merged /usr: the ELF interpreter is looked up as /lib64/...
ln -s usr/bin "$root/bin"
ln -s usr/sbin "$root/sbin"
ln -s usr/lib "$root/lib"
ln -s usr/lib64 "$root/lib64"
cp -a /usr/lib64 "$root/usr/"

for p in $progs; do
  install -m 0755 -s "$bin/$p" "$root/usr/bin/$p"
done
# /bin/sh (dash, 130 KB): health checks given as a shell command need it
# (podman kube play turns every probe into one), and so does `exec ... sh`.
cp /usr/bin/dash "$root/usr/bin/dash"
ln -s dash "$root/usr/bin/sh"
mkdir -p "$root/usr/share/doc/dash"
cp /usr/share/doc/dash/copyright "$root/usr/share/doc/dash/"

libs=$( (for p in $progs; do ldd "$bin/$p"; done; ldd /usr/bin/dash) |
       awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u)
for l in $libs; do
  real=$(readlink -f "$l")
  dir=$(dirname "$real")
  mkdir -p "$root$dir"
  cp -a "$real" "$root$dir/"
  name=$(basename "$l")
  [ "$name" = "$(basename "$real")" ] || [ -e "$root$dir/$name" ] ||
    ln -s "$(basename "$real")" "$root$dir/$name"
  # dpkg may know the file under /lib or /usr/lib (merged /usr): ask for both.
  pkg=""
  for f in "$l" "$real" "${real#/usr}"; do
    pkg=$(dpkg -S "$f" 2>/dev/null | head -n 1 | cut -d: -f1) && [ -n "$pkg" ] && break
  done
  if [ -n "$pkg" ] && [ -f "/usr/share/doc/$pkg/copyright" ]; then
    mkdir -p "$root/usr/share/doc/$pkg"
    cp "/usr/share/doc/$pkg/copyright" "$root/usr/share/doc/$pkg/"
  fi
done

cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
printf 'root:x:0:0:root:/root:/usr/sbin/nologin\ncairn:x:%s:%s:Cairn:/var/lib/cairn:/usr/sbin/nologin\n' \
  "$uid" "$uid" > "$root/etc/passwd"
printf 'root:x:0:\ncairn:x:%s:\n' "$uid" > "$root/etc/group"
printf 'passwd: files\ngroup: files\nhosts: files dns\n' > "$root/etc/nsswitch.conf"

# Every program must find all its libraries in the new root.
for p in $progs; do
  if ! chroot "$root" "/usr/bin/$p" --help >/dev/null 2>&1; then
    echo "image-rootfs: $p does not run in $root" >&2
    chroot "$root" "/usr/bin/$p" --help >&2 || true
    exit 1
  fi
done
