# The two commands of the README:  make book  /  make test
# Both create the course environment in .venv (once; again when requirements change).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
export LCTOOLS_MODE ?= quick

.PHONY: book test bench env clean

env: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip uninstall --quiet --yes lctools 2>/dev/null || true  # the old distribution name
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

# Build the whole book, executing every notebook (strict: any warning fails).
book: env
	$(BIN)/jupyter-book build --all -W -n --keep-going .

# All tests: package, strict book build (the one execution of every notebook, checked cell
# by cell), parameters cells, browser check. Two workers: the book build runs on one while
# the other files run on the other (tests/conftest.py schedules the build first). The tests
# build into _build/test; the reader's _build/html and _build/.jupyter_cache stay as they are.
test: env
	$(BIN)/python -m pytest -n 2 --dist loadfile --no-loadscope-reorder --durations=25 tests

# Benchmarks (not part of the tests).
bench: env
	$(BIN)/python benchmarks/bench_core.py
	$(BIN)/python benchmarks/bench_ensemble.py

clean:
	rm -rf _build
