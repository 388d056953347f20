#!/usr/bin/env bash
# Installs PostgreSQL 15's server programs (initdb, pg_ctl, postgres) when they are missing, for
# `rewind postgres up` and the test session's PostgreSQL fixtures. Sourced by scripts/main.sh and
# scripts/test.sh after ensure-venv.sh; a no-op (no apt, no network) when they are present.
# Looks where scripts/postgres_local/binaries.py looks: /usr/lib/postgresql/15/bin, then `pg_config --bindir`.
set -euo pipefail

_rewind_pg15_found() {
  local dir
  for dir in /usr/lib/postgresql/15/bin "$(pg_config --bindir 2>/dev/null || true)"; do
    if [ -n "$dir" ] && [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ] && [ -x "$dir/postgres" ]; then
      case "$("$dir/postgres" --version 2>/dev/null || true)" in
        *"(PostgreSQL) 15."* | *"(PostgreSQL) 15") return 0 ;;
      esac
    fi
  done
  return 1
}

_rewind_pg15_install() {
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
      echo "scripts/ensure-postgres.sh: PostgreSQL 15 is missing and this is not root and there is no sudo:" \
        "install postgresql-15 (apt-get install postgresql-15), then run again" >&2
      return 1
    fi
    sudo=(sudo)
  fi
  echo "PostgreSQL 15 not found: installing it with apt-get (postgresql-15, else postgresql)" >&2
  "${sudo[@]}" apt-get update -q >&2
  # Debian's package makes (and, where services may start, starts) a cluster "15/main" on port 5432;
  # Rewind never uses it: `rewind postgres up` runs its own cluster under .run/pg.
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql-15 >&2 \
    || "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql >&2
  if ! _rewind_pg15_found; then
    echo "scripts/ensure-postgres.sh: installed, but still no PostgreSQL 15 server programs in" \
      "/usr/lib/postgresql/15/bin or \`pg_config --bindir\`" >&2
    return 1
  fi
}

if ! _rewind_pg15_found; then
  _rewind_pg15_install || { unset -f _rewind_pg15_found _rewind_pg15_install; return 1 2>/dev/null || exit 1; }
fi
unset -f _rewind_pg15_found _rewind_pg15_install
