#!/usr/bin/env bash
# Start Debian's PostgreSQL cluster and make the test role/database if missing (needs root).
set -euo pipefail
version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
if ! pg_lsclusters -h | grep -q "^$version main"; then
  pg_createcluster "$version" main >/dev/null
fi
pg_lsclusters -h | grep -q "^$version main .* online" || pg_ctlcluster "$version" main start
for _ in $(seq 1 30); do
  su postgres -c "psql -qtAc 'select 1'" >/dev/null 2>&1 && break
  sleep 0.5
done
su postgres -c "psql -qtAc \"select 1 from pg_roles where rolname='tidewater'\"" | grep -q 1 \
  || su postgres -c "psql -qc \"create role tidewater login superuser password 'tidewater'\""
su postgres -c "psql -qtAc \"select 1 from pg_database where datname='tidewater'\"" | grep -q 1 \
  || su postgres -c "createdb -O tidewater tidewater"
