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
if [ "$#" -gt 0 ]; then
  exec python -m pytest "$@"
fi

# The whole suite in two lanes side by side, for its 20-minute budget on 2 cores. The outage lane is
# the tests that bring their own broker (or none) and spend most of their minutes waiting out an
# outage; they never touch the session's broker or PostgreSQL, which only the main lane starts
# (fixed ports and run directories). The main lane runs unit tests first, so the soak's busy minutes
# overlap tests without deadlines.
OUTAGE_LANE=(tests/unit/pipelines/live/test_resilience.py tests/unit/state/test_replica_outage.py
             tests/integration/test_soak.py tests/integration/test_broker_outage.py
             tests/integration/test_outbox_relay_outage.py)
mkdir -p .run
LANE_LOG=.run/test-outage-lane.log
echo "== outage lane (${OUTAGE_LANE[*]}) in the background; its output: $LANE_LOG" >&2
python -m pytest -p no:cacheprovider "${OUTAGE_LANE[@]}" >"$LANE_LOG" 2>&1 &
LANE_PID=$!
trap 'kill -TERM "$LANE_PID" 2>/dev/null || true' INT TERM
IGNORES=()
for path in "${OUTAGE_LANE[@]}"; do IGNORES+=(--ignore "$path"); done
main_rc=0
python -m pytest "${IGNORES[@]}" tests/unit tests/test_docs.py tests/interop tests/integration || main_rc=$?
lane_rc=0
wait "$LANE_PID" || lane_rc=$?
echo "== outage lane ($LANE_LOG), exit $lane_rc:" >&2
cat "$LANE_LOG"
if [ "$main_rc" -ne 0 ] || [ "$lane_rc" -ne 0 ]; then
  echo "scripts/test.sh: FAILED (main lane exit $main_rc, outage lane exit $lane_rc)" >&2
  exit 1
fi
