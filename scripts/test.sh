#!/usr/bin/env bash
# The whole test suite on a fresh machine: venv + packages, Kafka jars (Maven Central),
# a real local broker (started by the test session unless KAFKA_BOOTSTRAP_SERVERS is set).
# Static checks first (ruff, then mypy, both configured in pyproject.toml); any error stops the run.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source scripts/ensure-venv.sh
source scripts/ensure-postgres.sh
source scripts/ensure-apt-tools.sh

check() {
  local name="$1"
  shift
  echo "== $name: $*" >&2
  if ! "$@"; then
    echo "scripts/test.sh: FAILED at the $name step ($*); fix the errors above, the tests did not run" >&2
    exit 1
  fi
}

check lint ruff check .
check types mypy
check schemas .venv/bin/rewind schemas check
exec python -m pytest "$@"
