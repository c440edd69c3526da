# The two commands of the README: `make demo` and `make test`. Both set everything up first.
TOPIC ?= Should a five-person startup adopt a four-day work week?
VENV := .venv/bin

.PHONY: setup demo test lint unit

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
	$(VENV)/pytest -q -p no:cacheprovider

test: setup lint unit
