# llmbench developer tasks. `make help` lists them.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
export CARGO_TERM_COLOR := never

.PHONY: help venv install browser develop run test test-rust test-python lint fmt clean build-cuda

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(VPY):
	$(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip

venv: $(VPY) ## create the virtual environment .venv

install: $(VPY) ## build the extension (release) and install llmbench with test extras into .venv
	$(VPY) -m pip install -q '.[test,real-server,transformers]'

develop: $(VPY) ## fast debug build of the extension, installed editable into .venv
	$(VPY) -m pip install -q 'maturin>=1.9.4,<2' numpy pandas matplotlib pytest ruff mypy
	$(VENV)/bin/maturin develop

run: install ## the main job: a sweep against the embedded default target
	$(VENV)/bin/llmbench metrics

browser: ## a headless Chromium for the report tests (Debian's chromium package)
	scripts/install-browser.sh

test: install browser test-rust lint test-python ## everything CI runs: install, Rust tests, lints, Python tests

test-rust: ## Rust unit and integration tests (no Python needed)
	PROPTEST_CASES=4096 cargo test --locked

lint: $(VPY) ## rustfmt, clippy -D warnings, ruff, and the stubs checked against the module
	cargo fmt --check
	cargo clippy --locked --all-targets -- -D warnings
	cargo clippy --locked --all-targets --features python -- -D warnings
	$(VENV)/bin/ruff check python tests benches
	$(VENV)/bin/ruff format --check python tests benches
	$(VPY) -m mypy.stubtest llmbench._core --allowlist .stubtest-allowlist

test-python: ## Python API, CLI and real-server tests against the installed package
	LLMBENCH_REQUIRE_REAL_SERVER=1 LLMBENCH_REQUIRE_BROWSER=1 $(VPY) -m pytest -q tests/python

build-cuda: ## wheel with the baseline's CUDA backend (no GPU needed to build) -> .whl-cuda/
	PYTHON=$(PY) scripts/build-cuda.sh

fmt: ## format Rust and Python sources
	cargo fmt
	$(VENV)/bin/ruff format python tests benches

clean: ## remove build outputs and the virtual environment
	rm -rf target $(VENV) results
