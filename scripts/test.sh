#!/usr/bin/env bash
# The whole test suite on a fresh machine: venv + packages, Kafka jars (Maven Central),
# a real local broker (started by the test session unless KAFKA_BOOTSTRAP_SERVERS is set).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source scripts/ensure-venv.sh
exec python -m pytest "$@"
