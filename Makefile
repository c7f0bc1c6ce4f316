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
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

# Build the whole book, executing every notebook (strict: any warning fails).
book: env
	$(BIN)/jupyter-book build --all -W -n --keep-going .

# All tests: package, notebooks (papermill + nbval), strict book build, browser check.
test: env
	$(BIN)/python -m pytest -n 2 --dist loadfile tests book --nbval-lax

# Benchmarks (not part of the tests).
bench: env
	$(BIN)/python benchmarks/bench_core.py
	$(BIN)/python benchmarks/bench_ensemble.py

clean:
	rm -rf _build
