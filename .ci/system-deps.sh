#!/usr/bin/env bash
# Debian packages the test suite drives for real: chromium (browser test), bubblewrap (the sandbox's
# namespaces and root file system; libseccomp2, its syscall filter, comes with apt itself).
# PostgreSQL: .ci/postgres.sh. Installs only as root and only what is missing; never downloads a browser
# build of its own.
set -euo pipefail
[ "$(id -u)" = 0 ] || exit 0
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
[ -x /usr/bin/bwrap ] || missing+=(bubblewrap)
dpkg -s libseccomp2 >/dev/null 2>&1 || missing+=(libseccomp2)
[ ${#missing[@]} = 0 ] && exit 0
(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}") >/dev/null 2>&1 ||
    echo "warning: could not install ${missing[*]}; the browser and full-isolation sandbox tests will fail in CI" >&2
