#!/usr/bin/env bash
# Stop the test PostgreSQL server started by scripts/pg-start.sh (same WEFT_PG_DIR) and
# remove its directory. Does nothing when there is none; never touches a directory that
# pg-start.sh did not make (no .weft-pg marker).
set -euo pipefail

PGBIN=${WEFT_PG_BIN:-/usr/lib/postgresql/15/bin}
dir=${WEFT_PG_DIR:-/tmp/weft-pg}

[[ -f "$dir/.weft-pg" ]] || exit 0
if [[ -f "$dir/data/postmaster.pid" ]]; then
  if [[ "$(id -u)" == 0 ]]; then
    runuser -u postgres -- "$PGBIN/pg_ctl" stop -D "$dir/data" -m fast -w >/dev/null 2>&1 || true
  else
    "$PGBIN/pg_ctl" stop -D "$dir/data" -m fast -w >/dev/null 2>&1 || true
  fi
fi
rm -rf "$dir"
