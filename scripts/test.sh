#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs what is missing (a JDK and Maven for
# the local Apache Kafka broker, the Python packages in .venv), checks lint and types, then
# runs pytest against the embedded log and a real Kafka broker.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v java >/dev/null 2>&1 || need_apt+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || need_apt+=(maven)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing ${need_apt[*]} (needed to run a local Apache Kafka broker)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
  else
    echo "missing ${need_apt[*]}: install them (a JDK 17+ and Maven) and run again" >&2
    exit 1
  fi
fi

# A real PostgreSQL for the view tests (Debian's package; the tests start their own cluster).
if [ -z "${ISTORE_TEST_POSTGRES_DSN:-}" ]; then
  bash scripts/postgres.sh
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'

echo "== lint and types"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy

echo "== Apache Kafka broker jars (fetched once into the cache)"
.venv/bin/istore kafka jars

echo "== tests"
.venv/bin/pytest "$@"
