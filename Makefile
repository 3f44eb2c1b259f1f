# The README's two commands: `make demo` and `make test`.
.PHONY: setup demo test test-all lint bench

VENV ?= .venv
PY := $(VENV)/bin/python

setup:
	@bash scripts/setup.sh

demo: setup
	$(VENV)/bin/simkit generate --n 16 --out out/generate

test: setup
	$(PY) -m pytest -m "not slow" -q

test-all: setup
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check simkit solvers generators tests scripts

bench: setup
	$(PY) scripts/bench/geometry.py
	$(PY) scripts/bench/stability.py --n 200 --workers 2
	$(PY) scripts/bench/stability_agreement.py
	$(PY) scripts/bench/samplers.py
	$(PY) scripts/bench/generator.py
