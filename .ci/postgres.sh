#!/usr/bin/env bash
# Start a throwaway PostgreSQL on loopback for the DB tests and print its URL (start) or stop it (stop).
# Needs root (apt-get, pg_ctlcluster); without root it prints nothing and the postgres tests skip.
set -euo pipefail
action=${1:-start}
[ "$(id -u)" = 0 ] || exit 0
if [ "$action" = stop ]; then
    for c in $(pg_lsclusters -h 2>/dev/null | awk '{print $1"/"$2}'); do pg_ctlcluster "${c%/*}" "${c#*/}" stop || true; done
    exit 0
fi
if ! command -v pg_ctlcluster >/dev/null 2>&1 || [ -z "$(pg_lsclusters -h 2>/dev/null)" ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) >&2
fi
read -r ver name _ <<<"$(pg_lsclusters -h | head -1)"
conf=/etc/postgresql/$ver/$name/postgresql.conf
grep -q "^listen_addresses = '127.0.0.1'" "$conf" || echo "listen_addresses = '127.0.0.1'" >>"$conf"
pg_ctlcluster "$ver" "$name" start >/dev/null 2>&1 || true
pg_ctlcluster "$ver" "$name" status >/dev/null
port=$(pg_lsclusters -h | head -1 | awk '{print $3}')
su postgres -c "psql -q -p $port -tc \"SELECT 1 FROM pg_roles WHERE rolname='codealign'\"" | grep -q 1 ||
    su postgres -c "psql -q -p $port -c \"CREATE ROLE codealign LOGIN PASSWORD 'codealign' CREATEDB\"" >&2
su postgres -c "psql -q -p $port -tc \"SELECT 1 FROM pg_database WHERE datname='codealign_test'\"" | grep -q 1 ||
    su postgres -c "psql -q -p $port -c \"CREATE DATABASE codealign_test OWNER codealign\"" >&2
echo "postgresql+psycopg://codealign:codealign@127.0.0.1:$port/codealign_test"
