#!/usr/bin/env bash
# Install what the mmsam serve page and its browser test need, idempotently and quietly:
#   1. onnxruntime-web (the version pinned in mmsam/serve/static/package-lock.json) with
#      npm ci into mmsam/serve/static/node_modules (ignored by git), when node + npm exist;
#   2. Debian's chromium + chromium-driver (the headless browser of tests/serve), when
#      apt-get exists and we are root (CI), unless MMSAM_SKIP_BROWSER=1.
# selenium itself is a Python test requirement (requirements/tests.txt).
# A second run checks the installed files and returns in well under a second.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WEB="$REPO/mmsam/serve/static"
log() { echo "setup_web: $*" >&2; }

# ---- 1. onnxruntime-web --------------------------------------------------------
STAMP="$WEB/node_modules/.mmsam-web-stamp"
KEY="$(sha256sum "$WEB/package-lock.json" | cut -c1-16)"
DIST="$WEB/node_modules/onnxruntime-web/dist"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$KEY" ] && [ -f "$DIST/ort.wasm.min.js" ] \
  && [ -f "$DIST/ort-wasm-simd-threaded.wasm" ]; then
  :
elif command -v npm >/dev/null 2>&1; then
  log "installing onnxruntime-web with npm ci (about 150 MB in $WEB/node_modules)"
  (cd "$WEB" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error >/dev/null) \
    || { log "ERROR: npm ci failed in $WEB"; exit 1; }
  echo "$KEY" >"$STAMP"
else
  log "npm not found: the page will decode on the server (install node + npm and rerun)"
fi

# ---- 2. the headless browser for the tests ---------------------------------------
if [ "${MMSAM_SKIP_BROWSER:-0}" = "1" ]; then
  exit 0
fi
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  exit 0
fi
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
  log "installing Debian's chromium and chromium-driver (headless browser tests)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null 2>&1 || true
  apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null \
    || { log "ERROR: apt-get install chromium chromium-driver failed"; exit 1; }
else
  log "chromium/chromedriver missing and apt-get not usable here: the browser test skips" \
    "(it fails under CI=true)"
fi
