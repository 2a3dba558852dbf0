#!/usr/bin/env bash
# Start a private PostgreSQL 15 server for the tests and print its URL on stdout (one line):
#   postgresql://postgres@127.0.0.1:PORT/postgres
# The cluster lives in $WEFT_PG_DIR (default /tmp/weft-pg): data/ holds the cluster, the
# unix socket sits in the directory itself, log is the server's log. It listens on
# 127.0.0.1:$WEFT_PG_PORT (default 25432: below the ephemeral port range, where a client
# socket of an earlier test, in TIME_WAIT, could hold the port) with trust authentication
# for local and loopback connections; fsync stays on (the server's default). The
# superuser is "postgres".
#
# Idempotent: when a server of ours already runs there, it only prints the URL. A
# directory left by a server that is gone is wiped and made afresh. A directory that is
# not ours (no .weft-pg marker) is never touched.
#
# initdb refuses to run as root: as root the cluster is made and run by the `postgres`
# system user (Debian's package creates it), which then owns the directory. Stop it with
# scripts/pg-stop.sh.
set -euo pipefail

PGBIN=${WEFT_PG_BIN:-/usr/lib/postgresql/15/bin}
dir=${WEFT_PG_DIR:-/tmp/weft-pg}
port=${WEFT_PG_PORT:-25432}
url="postgresql://postgres@127.0.0.1:${port}/postgres"

die() {
  echo "pg-start: $*" >&2
  exit 1
}

[[ -x "$PGBIN/initdb" && -x "$PGBIN/pg_ctl" ]] ||
  die "no PostgreSQL 15 in $PGBIN (install the Debian package postgresql)"

# as_owner CMD...: run CMD as the cluster's owner (postgres when we are root).
as_owner() {
  if [[ "$(id -u)" == 0 ]]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

is_running() {
  [[ -f "$dir/data/postmaster.pid" ]] &&
    as_owner "$PGBIN/pg_ctl" status -D "$dir/data" >/dev/null 2>&1 &&
    "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$port" -d postgres -U postgres
}

if [[ -e "$dir" && ! -f "$dir/.weft-pg" ]]; then
  if [[ -n "$(ls -A "$dir" 2>/dev/null)" ]]; then
    die "$dir exists and was not made by pg-start.sh; choose another WEFT_PG_DIR"
  fi
fi
if [[ -f "$dir/.weft-pg" ]] && is_running; then
  echo "$url"
  exit 0
fi

# A fresh directory. A server of ours may still hold it half-started: stop it first.
if [[ -f "$dir/data/postmaster.pid" ]]; then
  as_owner "$PGBIN/pg_ctl" stop -D "$dir/data" -m immediate >/dev/null 2>&1 || true
fi
rm -rf "$dir"
mkdir -p "$dir"
touch "$dir/.weft-pg"
if [[ "$(id -u)" == 0 ]]; then
  chown -R postgres: "$dir"
fi

# --no-sync: only initdb's own flush of the template files is skipped (a throwaway
# cluster); the server itself runs with fsync on.
as_owner "$PGBIN/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 \
  --no-sync >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; die "initdb failed"; }

cat >>"$dir/data/postgresql.conf" <<EOF
# weft tests (scripts/pg-start.sh)
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
max_connections = 300
fsync = on
EOF
# pg_hba.conf from initdb -A trust already trusts local and loopback connections only.

as_owner "$PGBIN/pg_ctl" start -D "$dir/data" -l "$dir/log" -w -t 30 >/dev/null 2>&1 ||
  { tail -n 20 "$dir/log" >&2 2>/dev/null; die "the server did not start (log: $dir/log)"; }
"$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$port" -d postgres -U postgres -t 10 ||
  die "the server does not answer on 127.0.0.1:$port"
echo "$url"
