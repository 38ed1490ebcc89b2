#!/usr/bin/env bash
# rgw-down.sh WORKDIR [--keep]: stops what rgw-up.sh started in WORKDIR (by
# its PID files, checking each PID still runs with WORKDIR's ceph.conf), then
# removes WORKDIR unless --keep. Refuses directories rgw-up.sh did not make.
set -uo pipefail
WORK=${1:?usage: rgw-down.sh WORKDIR [--keep]}
[ -d "$WORK" ] || exit 0
WORK=$(cd "$WORK" && pwd)
[ -f "$WORK/.cairn-rgw" ] || { echo "rgw-down: $WORK is not an rgw-up.sh directory" >&2; exit 1; }
pid_alive() { [ -d "/proc/$1" ] && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]; }
ours() { tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -qF -- "$WORK/ceph.conf"; }
stop() { # NAME
  local f=$WORK/pids/$1.pid pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if pid_alive "$pid" && ours "$pid"; then
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 60); do pid_alive "$pid" || break; sleep 0.05; done
    pid_alive "$pid" && kill -KILL "$pid" 2>/dev/null
    for _ in $(seq 40); do pid_alive "$pid" || break; sleep 0.05; done
  fi
  rm -f "$f"
}
for n in rgw osd mon; do stop "$n"; done
[ "${2:-}" = --keep ] || rm -rf "$WORK"
