#!/bin/sh
# `make run`: a local cairnd on https://127.0.0.1:8007 with one datastore,
# everything under ./var (config ./var/etc, runtime ./var/run, data ./var/datastore).
set -eu
bin=${1:-build/bin}
top=$(pwd)
etc=$top/var/etc
run=$top/var/run
mkdir -p "$etc" "$run" "$top/var/datastore"

if ! grep -qs '^datastore: default$' "$etc/datastore.cfg"; then
  "$bin/cairn-admin" --config-dir "$etc" --run-dir "$run" \
    datastore create default "$top/var/datastore/default" \
    --comment "created by make run"
fi

echo "cairn: starting cairnd on https://127.0.0.1:8007 (Ctrl-C stops it)"
echo "cairn: root token file: $etc/root.token"
echo "cairn: the TLS certificate fingerprint is logged below"
exec "$bin/cairnd" --config-dir "$etc" --run-dir "$run" --listen 127.0.0.1:8007
