#!/usr/bin/env bash
# Installs what is missing before `npm start` / `npm test`: npm dependencies (when node_modules is absent or
# older than package-lock.json) and the Debian packages of scripts/setup-system.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x node_modules/.bin/node ] || [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "[tessera] installing npm dependencies…"
  npm install --no-audit --no-fund --loglevel=error
fi
bash scripts/setup-system.sh
