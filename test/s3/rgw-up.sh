#!/usr/bin/env bash
# rgw-up.sh WORKDIR PORT: a throw-away Ceph RGW for Cairn's S3 tests.
#
# Starts one monitor, one memstore OSD and radosgw on 127.0.0.1:PORT (the
# monitor takes PORT+1 and PORT+2), all with authentication off and every
# file under WORKDIR, then creates one S3 user. Prints shell assignments
# (S3_ENDPOINT, S3_PORT, S3_ACCESS_KEY, S3_SECRET_KEY, S3_REGION) and saves them
# in WORKDIR/s3.env. Fails loudly: no silent skips. Stop with rgw-down.sh.
#
# Knobs (environment): S3_ACCESS_KEY, S3_SECRET_KEY, STORE_BYTES (memstore size).
set -euo pipefail

WORK=${1:?usage: rgw-up.sh WORKDIR PORT}
PORT=${2:?usage: rgw-up.sh WORKDIR PORT}
AK=${S3_ACCESS_KEY:-CAIRNTESTACCESSKEY01}
SK=${S3_SECRET_KEY:-cairn-test-secret-key-0123456789abcdefgh}
STORE_BYTES=${STORE_BYTES:-$((2 * 1024 * 1024 * 1024))}
MON1=$((PORT + 1))
MON2=$((PORT + 2))

for bin in ceph-mon ceph-osd radosgw radosgw-admin ceph ceph-authtool monmaptool curl; do
  command -v "$bin" >/dev/null || { echo "rgw-up: $bin missing: run scripts/deps.sh test" >&2; exit 1; }
done

mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
[ -z "$(ls -A "$WORK")" ] || { echo "rgw-up: $WORK is not empty" >&2; exit 1; }
touch "$WORK/.cairn-rgw"
mkdir -p "$WORK"/{run,pids,log,mon,osd,rgw}
CONF=$WORK/ceph.conf
say() { echo "[rgw-up] $*" >&2; }

# Start-up in ~2 s instead of ~70 s comes from the short paxos intervals;
# with auth off, clients must also be told to use crc mode and no auth, or
# radosgw retries its authentication forever.
cat >"$CONF" <<CONF
[global]
fsid = $(cat /proc/sys/kernel/random/uuid)
mon host = [v2:127.0.0.1:$MON2,v1:127.0.0.1:$MON1]
public addr = 127.0.0.1
public network = 127.0.0.0/8
ms bind ipv4 = true
ms bind ipv6 = false
auth cluster required = none
auth service required = none
auth client required = none
ms mon client mode = crc
ms client mode = crc
mon warn on insecure global id reclaim allowed = false
keyring = $WORK/keyring
run dir = $WORK/run
admin socket = $WORK/run/\$name.asok
pid file = $WORK/run/\$name.pid
log file = $WORK/log/\$name.log
log to stderr = false
err to stderr = true
crash dir = $WORK/crash
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon warn on pool no redundancy = false
mon max pg per osd = 1000
mon data avail warn = 1
mon data avail crit = 0
paxos propose interval = 0.05
paxos min wait = 0.01

[mon]
mon data = $WORK/mon/\$cluster-\$id

[osd]
osd data = $WORK/osd/\$cluster-\$id
osd objectstore = memstore
memstore device bytes = $STORE_BYTES
osd op num shards = 1
osd op num threads per shard = 2

[client.rgw.cairn]
ms mon client mode = crc
auth client required = none
rgw data = $WORK/rgw/\$cluster-\$id
rgw frontends = beast endpoint=127.0.0.1:$PORT
rgw thread pool size = 64
rgw gc obj min wait = 30
rgw gc processor period = 30
rgw enable usage log = false
rgw dns name =
CONF

CEPH=(ceph -c "$CONF" --connect-timeout 20)
pid_alive() { [ -d "/proc/$1" ] && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]; }
daemon() { # NAME CMD...: foreground daemon, detached into its own session
  local name=$1; shift
  setsid "$@" -c "$CONF" -f </dev/null >"$WORK/log/$name.out" 2>&1 &
  echo $! >"$WORK/pids/$name.pid"
}
fail() {
  echo "rgw-up: $*" >&2
  for f in "$WORK"/log/*.out "$WORK"/log/*.log; do
    [ -f "$f" ] && { echo "--- $f" >&2; tail -n 15 "$f" >&2; }
  done
  "$(dirname "$0")/rgw-down.sh" "$WORK" --keep >&2 || true
  exit 1
}
wait_for() { # TRIES PIDNAME CMD...: poll every 0.1 s while the daemon lives
  local tries=$1 name=$2; shift 2
  for _ in $(seq "$tries"); do
    "$@" >/dev/null 2>&1 && return 0
    pid_alive "$(cat "$WORK/pids/$name.pid")" || fail "$name exited"
    sleep 0.1
  done
  fail "timed out waiting for $name"
}

say "monitor"
ceph-authtool --create-keyring "$WORK/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
ceph-authtool "$WORK/keyring" --gen-key -n client.admin --cap mon 'allow *' --cap osd 'allow *' \
  --cap mgr 'allow *' >/dev/null
monmaptool --create --clobber --fsid "$(awk '/^fsid/{print $3}' "$CONF")" \
  --addv a "[v2:127.0.0.1:$MON2,v1:127.0.0.1:$MON1]" "$WORK/monmap" >/dev/null
ceph-mon -c "$CONF" --mkfs -i a --monmap "$WORK/monmap" --keyring "$WORK/keyring" \
  2>"$WORK/log/mon-mkfs.err" || fail "ceph-mon --mkfs failed"
daemon mon ceph-mon -i a
wait_for 150 mon "${CEPH[@]}" mon stat

say "osd (memstore)"
OSD_UUID=$(cat /proc/sys/kernel/random/uuid)
OSD_ID=$("${CEPH[@]}" osd new "$OSD_UUID")
mkdir -p "$WORK/osd/ceph-$OSD_ID"
ceph-osd -c "$CONF" -i "$OSD_ID" --mkfs --osd-uuid "$OSD_UUID" >"$WORK/log/osd-mkfs.out" 2>&1 ||
  fail "ceph-osd --mkfs failed"
daemon osd ceph-osd -i "$OSD_ID"
osd_up() { "${CEPH[@]}" osd dump 2>/dev/null | grep -q "^osd\.$OSD_ID up"; }
wait_for 300 osd osd_up

say "radosgw on 127.0.0.1:$PORT"
mkdir -p "$WORK/rgw/ceph-rgw.cairn"
daemon rgw radosgw -n client.rgw.cairn
http_up() { curl -s -o /dev/null -m 2 "http://127.0.0.1:$PORT/"; }
wait_for 600 rgw http_up

radosgw-admin -c "$CONF" -n client.admin user create --uid cairn --display-name cairn \
  --access-key "$AK" --secret-key "$SK" >"$WORK/log/user.json" 2>"$WORK/log/user.err" ||
  fail "radosgw-admin user create failed"

# The new user is visible to radosgw once an authenticated request passes.
signed_ok() {
  [ "$(curl -s -o /dev/null -m 2 -w '%{http_code}' --aws-sigv4 "aws:amz:us-east-1:s3" \
      -H "x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" \
      --user "$AK:$SK" "http://127.0.0.1:$PORT/")" = 200 ]
}
wait_for 100 rgw signed_ok

cat >"$WORK/s3.env" <<ENV
S3_ENDPOINT=127.0.0.1
S3_PORT=$PORT
S3_ACCESS_KEY=$AK
S3_SECRET_KEY=$SK
S3_REGION=us-east-1
ENV
say "ready"
cat "$WORK/s3.env"
