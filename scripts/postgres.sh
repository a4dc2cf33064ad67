#!/usr/bin/env bash
# Makes sure Debian's PostgreSQL server binaries (initdb, pg_ctl, postgres) are installed, for the
# throwaway clusters the tests start themselves (tests/postgres_server.py). Safe to run again.
# It never starts or configures a server: if the package starts its own "main" cluster, that one
# is left alone, since the tests run theirs on a free port.
set -euo pipefail

find_initdb() {
  local found=""
  local candidate
  # Newest version last, so the loop keeps the one the tests will pick.
  for candidate in $(compgen -G '/usr/lib/postgresql/*/bin/initdb' | sort -V); do
    [ -x "$candidate" ] && found=$candidate
  done
  [ -n "$found" ] && echo "$found"
}

if initdb=$(find_initdb); then
  echo "PostgreSQL server binaries already installed: $initdb ($("$initdb" --version))"
  exit 0
fi

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "PostgreSQL server binaries not found in /usr/lib/postgresql/*/bin, and this script can" >&2
  echo "only install them as root with apt-get. Install Debian's package yourself:" >&2
  echo "  sudo apt-get install postgresql" >&2
  echo "or point the tests at a server you run: ISTORE_TEST_POSTGRES_DSN=postgresql://..." >&2
  exit 1
fi

echo "installing Debian's postgresql package (server binaries for the tests' own clusters)"
if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; }; then
  echo "apt-get could not install postgresql (see the output above)" >&2
  exit 1
fi

if ! initdb=$(find_initdb); then
  echo "apt-get installed postgresql, but no /usr/lib/postgresql/*/bin/initdb exists" >&2
  exit 1
fi
echo "installed: $initdb ($("$initdb" --version))"
