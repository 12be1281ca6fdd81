# Two commands on a fresh machine: `make demo` and `make test` (each installs what it needs).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
FASHION_MNIST := /usr/share/datasets/fashion-mnist

SLURM_CONF_DEFAULT := /var/tmp/sslight-slurm/etc/slurm.conf

.PHONY: install data slurm postgres browser demo test bench lint format clean

install: $(STAMP)

# torch/torchvision (and playwright, a 50 MB wheel) are pinned here to the builds on this
# machine's disk; pyproject keeps honest ranges for other installs.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1 playwright==1.63.0
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

# Fashion-MNIST from Debian's dataset-fashion-mnist where apt exists; elsewhere torchvision downloads it.
data:
	@if [ ! -f $(FASHION_MNIST)/train-images-idx3-ubyte.gz ] && command -v apt-get >/dev/null; then \
		export DEBIAN_FRONTEND=noninteractive; \
		$(SUDO) apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 || \
		{ $(SUDO) apt-get update -q >/dev/null && $(SUDO) apt-get install -y -q dataset-fashion-mnist >/dev/null; }; \
	fi

demo: install data
	$(VENV)/bin/orchestrate grid experiments/demo.yaml --executor local

# A real single-node SLURM cluster for the integration tests, where we are root with apt.
slurm:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then scripts/slurm-local.sh start >/dev/null; \
	else echo "slurm: not root with apt-get; SLURM tests will be skipped (they fail under CI=true)"; fi

# A private PostgreSQL on 127.0.0.1:5433 for the registry/Optuna tests, where we are root with apt.
postgres:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then scripts/postgres-local.sh start >/dev/null; \
	else echo "postgres: not root with apt-get; PostgreSQL tests will be skipped (they fail under CI=true)"; fi

# Debian's Chromium for the browser tests (the MLflow UI), where we are root with apt.
browser:
	@if ! command -v chromium >/dev/null && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get install -y -q chromium >/dev/null 2>&1 || \
		{ apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }; \
	fi

test: install data slurm postgres browser
	@if [ -z "$$SLURM_CONF" ] && [ -f $(SLURM_CONF_DEFAULT) ]; then export SLURM_CONF=$(SLURM_CONF_DEFAULT); fi; \
	$(PY) -m pytest -q

# Benchmarks side by side with lightly (installed for this only): benchmarks/results/<device>.*
# BENCH_ARGS, e.g. "--quick", "--only augment,orchestration", "--threads 1".
bench: install data
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) -m benchmarks.run $(BENCH_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache

format:
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) runs .pytest_cache
