#!/bin/sh
# s3rver-install.sh: installs the npm s3rver 3.7.1 (a light, loose S3 server
# used as an extra smoke target) into the repository's own node_modules/
# (git-ignored). Idempotent; needs node and npm. Nothing else is fetched.
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=$ROOT/node_modules/.bin/s3rver
if [ -x "$BIN" ] && grep -q '"version": "3.7.1"' "$ROOT/node_modules/s3rver/package.json" 2>/dev/null; then
  exit 0
fi
command -v npm >/dev/null || { echo "s3rver-install: npm is missing" >&2; exit 1; }
npm install --prefix "$ROOT" --no-save --no-package-lock --no-audit --no-fund \
  --loglevel=error s3rver@3.7.1 >&2
[ -x "$BIN" ] || { echo "s3rver-install: $BIN not installed" >&2; exit 1; }
