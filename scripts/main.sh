#!/usr/bin/env bash
# The main job on a fresh machine: venv + pinned packages, Kafka jars from Maven Central,
# a local Kafka broker (unless KAFKA_BOOTSTRAP_SERVERS is set), then `rewind demo`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source scripts/ensure-venv.sh
source scripts/ensure-postgres.sh
exec rewind demo "$@"
