#!/usr/bin/env bash
# Make sure a local PostgreSQL is installed, running, and has the role and database the tests use.
#
# Idempotent: run it as often as you like. Needs root (apt-get, pg_ctlcluster, runuser).
# Prints the database URL on the last line of standard output, e.g. for
#   export ROUNDTABLE_TEST_POSTGRES_URL="$(scripts/postgres.sh | tail -n1)"
set -euo pipefail

ROLE="${ROUNDTABLE_PG_ROLE:-roundtable}"
PASSWORD="${ROUNDTABLE_PG_PASSWORD:-roundtable}"
DATABASE="${ROUNDTABLE_PG_DATABASE:-roundtable_test}"
HOST=127.0.0.1

log() { echo "postgres.sh: $*" >&2; }

if [[ $(id -u) -ne 0 ]]; then
    log "run me as root (I install packages and start the cluster)"
    exit 1
fi

# 1. Installed?
if ! command -v pg_lsclusters >/dev/null 2>&1 || ! command -v pg_ctlcluster >/dev/null 2>&1 \
    || ! compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null; then
    log "installing PostgreSQL with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y postgresql
fi

# 2. A cluster? Take the newest installed version's first cluster, or create one.
cluster_line() { pg_lsclusters --no-header 2>/dev/null | sort -k1,1V | tail -n1; }
if [[ -z "$(cluster_line)" ]]; then
    version="$(ls /usr/lib/postgresql | sort -V | tail -n1)"
    log "no cluster found; creating ${version}/main"
    pg_createcluster "$version" main
fi
read -r VERSION CLUSTER PORT STATUS _ <<<"$(cluster_line)"

# 3. Running?
if [[ "$STATUS" != online* ]]; then
    log "starting cluster ${VERSION}/${CLUSTER} on port ${PORT}"
    pg_ctlcluster "$VERSION" "$CLUSTER" start
fi

psql_admin() { runuser -u postgres -- psql --port "$PORT" --no-psqlrc -v ON_ERROR_STOP=1 -qtA "$@"; }

for _ in $(seq 1 30); do
    if psql_admin -c "select 1" >/dev/null 2>&1; then break; fi
    sleep 0.5
done
psql_admin -c "select 1" >/dev/null

# 4. Role and database.
if [[ "$(psql_admin -c "select 1 from pg_roles where rolname = '${ROLE}'")" != "1" ]]; then
    log "creating role ${ROLE}"
    psql_admin -c "create role \"${ROLE}\" login password '${PASSWORD}'"
else
    # Keep the password what the URL says, even if someone changed it.
    psql_admin -c "alter role \"${ROLE}\" login password '${PASSWORD}'"
fi
if [[ "$(psql_admin -c "select 1 from pg_database where datname = '${DATABASE}'")" != "1" ]]; then
    log "creating database ${DATABASE}"
    psql_admin -c "create database \"${DATABASE}\" owner \"${ROLE}\""
fi

echo "postgresql+asyncpg://${ROLE}:${PASSWORD}@${HOST}:${PORT}/${DATABASE}"
