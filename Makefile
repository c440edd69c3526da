# The two commands of the README: `make demo` and `make test`. Both set everything up first.
# `make fast` is the quick loop while coding: the tests that need no server, in under a minute.
TOPIC ?= Should a five-person startup adopt a four-day work week?
VENV := .venv/bin
# pytest-xdist workers for `make unit`; each starts its own redis-server and nats-server.
WORKERS ?= 2

.PHONY: setup demo test lint unit fast

setup:
	bash scripts/setup.sh

demo: setup
	$(VENV)/roundtable ask "$(TOPIC)" --rounds 2 --voting rated

lint:
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .
	$(VENV)/mypy engine bus llms storage bot personas adapters tests bench examples
	$(VENV)/lint-imports

unit:
	$(VENV)/pytest -q -p no:cacheprovider -n $(WORKERS) --dist worksteal

# No redis-server, nats-server, PostgreSQL, subprocess or LiteLLM: see tests/conftest.py.
fast:
	$(VENV)/pytest -q -p no:cacheprovider --fast

test: setup lint unit
