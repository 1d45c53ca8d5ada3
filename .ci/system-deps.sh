#!/usr/bin/env bash
# Debian packages the test suite drives for real: chromium (browser test). PostgreSQL: .ci/postgres.sh.
# Installs only as root and only what is missing; never downloads a browser build of its own.
set -euo pipefail
[ "$(id -u)" = 0 ] || exit 0
command -v chromium >/dev/null 2>&1 && exit 0
(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1 ||
    echo "warning: could not install chromium; the browser test will fail in CI" >&2
