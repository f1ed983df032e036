# The README's two commands, and a few shortcuts for developers.
PY := .venv/bin/python

.PHONY: run test lint bench clean

run:   ## install and tune the digits CNN (SQLite storage in runs/)
	python3 -m venv .venv && .venv/bin/pip install torch==2.13.0 -e . && .venv/bin/torchhpo run

test:  ## install with the dev extras and run the whole test suite
	python3 -m venv .venv && .venv/bin/pip install torch==2.13.0 -e '.[dev]' && $(PY) -m pytest

lint:  ## what the suite also checks: ruff over the tree, mypy over torchhpo/
	.venv/bin/ruff check . && .venv/bin/mypy

bench: ## the published figures (tens of minutes); add --quick by hand for a smoke run
	$(PY) benchmarks/overhead.py

clean:
	rm -rf runs .pytest_cache .ruff_cache
