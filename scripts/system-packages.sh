#!/usr/bin/env bash
# Install the Debian/Ubuntu packages the project needs, or say exactly what to run.
# Usage: scripts/system-packages.sh [demo|test]
set -euo pipefail
purpose=${1:-demo}

need=()
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$pg_bin" ] || [ ! -x "$pg_bin/initdb" ]; then
  need+=(postgresql)
  pg_version=15
else
  pg_version=$(basename "$(dirname "$pg_bin")")
fi
if [ ! -f "/usr/share/postgresql/$pg_version/extension/postgis.control" ]; then
  need+=("postgresql-$pg_version-postgis-3")
fi
python3 -c "import ensurepip, venv" 2>/dev/null || need+=(python3-venv)
if [ -f frontend/package.json ]; then
  command -v npm >/dev/null 2>&1 || need+=(npm)
fi
if [ "$purpose" = test ] && [ -d tests/frontend ]; then
  [ -x /usr/bin/chromium ] || need+=(chromium)
fi

[ ${#need[@]} -eq 0 ] && exit 0

cmd="apt-get update && apt-get install -y --no-install-recommends ${need[*]}"
if [ "$(id -u)" -eq 0 ]; then
  echo ">> installing system packages: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q && apt-get install -y -q --no-install-recommends "${need[@]}"
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  echo ">> installing system packages with sudo: ${need[*]}"
  sudo DEBIAN_FRONTEND=noninteractive sh -c "$cmd"
else
  echo "error: missing system packages: ${need[*]}" >&2
  echo "run this as root, then run make again:" >&2
  echo "  sudo sh -c '$cmd'" >&2
  exit 1
fi
