#!/usr/bin/env bash
# Makes sure Debian's chromium and chromium-driver are installed, for the /ui/ page's browser tests
# (tests/test_ui.py): installs both with apt-get when either is missing and we are root, as
# scripts/with_postgres.sh does for PostgreSQL. Nothing is downloaded but Debian's packages.
set -euo pipefail

log() { echo "ensure_chromium: $*" >&2; }

if [ -x /usr/lib/chromium/chromium ] && command -v chromedriver >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    log "chromium or chromium-driver is missing and we are not root:"
    log "apt-get install chromium chromium-driver (the browser tests need both)."
    exit 1
fi
log "installing Debian's chromium and chromium-driver with apt-get"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
log "$(/usr/lib/chromium/chromium --version 2>/dev/null || echo 'chromium installed')"
