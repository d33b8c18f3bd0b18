# Loopwright developer commands. `make help` lists them.
# The two a new user needs: `make demo` (the whole loop on a local cluster) and `make test`.

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

VENV := .venv
PY := $(VENV)/bin/python
# The newest Python >= 3.11 on the machine creates the virtualenv (override: make install PYTHON=...).
ifndef PYTHON
PYTHON := $(shell for p in python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1 \
	&& { echo $$p; break; }; done)
endif

DEMO_SCRIPT := tests/cluster/demo.py
CLUSTER_SCRIPT := tests/cluster/cluster.py
# `make run` watches the namespaces of LOOPWRIGHT_NAMESPACES (comma list), or the whole cluster.
comma := ,
KOPF_NAMESPACES = $(if $(strip $(LOOPWRIGHT_NAMESPACES)),$(foreach ns,$(subst $(comma), ,$(LOOPWRIGHT_NAMESPACES)),--namespace=$(ns)),--all-namespaces)

.PHONY: help install test lint crds apply-crds run demo cluster-up cluster-down bench

help: ## List the targets.
	@grep -hE '^[a-z%-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

install: ## Create .venv and install Loopwright with every role and the dev tools.
	@test -n "$(PYTHON)" || { echo "make install: needs Python >= 3.11 (python3.11 or newer on PATH)" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m pip check

# A fresh clone has no .venv: create it on first use, so `make test` is the only setup step.
$(PY):
	$(MAKE) install

test: | $(PY) ## Run the test suite (tests marked `cluster` use a real API server; see tests/conftest.py).
	$(PY) -m pytest $(PYTEST_ARGS)

lint: | $(PY) ## ruff on the code and tests, mypy --strict on the package (both run; either fails it).
	@status=0; \
	$(VENV)/bin/ruff check operator tests || status=1; \
	$(VENV)/bin/mypy || status=1; \
	exit $$status

crds: | $(PY) ## Regenerate crds/ from the API models.
	$(PY) -m loopwright.crdgen

apply-crds: ## Install or update the CRDs in the cluster of the current KUBECONFIG.
	kubectl apply --server-side --force-conflicts -f crds/

run: | $(PY) ## Run the operator in the foreground against the current KUBECONFIG.
	@$(PY) -c 'import kubernetes; kubernetes.config.load_kube_config()' 2>/dev/null || { 		echo "make run: no usable KUBECONFIG (e.g. make cluster-up, then export KUBECONFIG from .cluster/env)" >&2; exit 1; }
	$(VENV)/bin/kopf run -m loopwright.main --standalone $(KOPF_NAMESPACES)

demo: | $(PY) ## The whole loop on a local cluster: data, training, canary, drift, retraining.
	@test -f $(DEMO_SCRIPT) || { echo "make demo: $(DEMO_SCRIPT) does not exist yet (the end-to-end demo has not landed)" >&2; exit 1; }
	$(PY) $(DEMO_SCRIPT)

cluster-up: | $(PY) ## Start the local test cluster (writes .cluster/env).
	@test -f $(CLUSTER_SCRIPT) || { echo "make cluster-up: $(CLUSTER_SCRIPT) does not exist yet" >&2; exit 1; }
	$(PY) $(CLUSTER_SCRIPT) up

cluster-down: | $(PY) ## Stop the local test cluster.
	@test -f $(CLUSTER_SCRIPT) || { echo "make cluster-down: $(CLUSTER_SCRIPT) does not exist yet" >&2; exit 1; }
	$(PY) $(CLUSTER_SCRIPT) down

bench: | $(PY) ## Run every benchmark (reports in reports/bench-<name>.md).
	@shopt -s nullglob; benches=(tests/bench/bench_*.py); \
	test $${#benches[@]} -gt 0 || { echo "make bench: no tests/bench/bench_*.py yet" >&2; exit 1; }; \
	for b in "$${benches[@]}"; do echo "== $$b"; $(PY) "$$b"; done

bench-%: | $(PY) ## Run one benchmark: make bench-<name> runs tests/bench/bench_<name>.py.
	@test -f tests/bench/bench_$*.py || { echo "make bench-$*: tests/bench/bench_$*.py does not exist" >&2; exit 1; }
	$(PY) tests/bench/bench_$*.py
