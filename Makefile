# Loopwright developer commands. `make help` lists them.
# The two a new user needs: `make demo` (the whole loop on kind) and `make test`.

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

DEMO_SCRIPT := tests/demo/demo.py
# `make demo` runs on kind (brought up by the kind-* targets below). DEMO_ARGS passes more options,
# e.g. DEMO_ARGS=--only-demo-namespace on a shared cluster.
# `make run` watches the namespaces of LOOPWRIGHT_NAMESPACES (comma list), or the whole cluster.
comma := ,
KOPF_NAMESPACES = $(if $(strip $(LOOPWRIGHT_NAMESPACES)),$(foreach ns,$(subst $(comma), ,$(LOOPWRIGHT_NAMESPACES)),--namespace=$(ns)),--all-namespaces)

.PHONY: help install proto test promtool browser lint crds apply-crds run demo bench

help: ## List the targets.
	@grep -hE '^[a-z0-9%-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

install: ## Create .venv and install Loopwright with every role and the dev tools.
	@test -n "$(PYTHON)" || { echo "make install: needs Python >= 3.11 (python3.11 or newer on PATH)" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m pip check

proto: | $(PY) ## Regenerate the gRPC messages from operator/loopwright/**/*.proto (setup.py; make install does it too).
	$(PY) -m pip install --quiet --no-deps -e .

# A fresh clone has no .venv: create it on first use, so `make test` is the only setup step.
$(PY):
	$(MAKE) install

test: browser | $(PY) ## Unit tests, then the e2e tests and the fault suite's lighter cases on kind (kind-up etc. first).
	LOOPWRIGHT_PROMTOOL="$$($(MAKE) -s promtool)" $(PY) -m pytest -m "not cluster" $(PYTEST_ARGS) || [ $$? -eq 5 ]
	$(MAKE) kind-up kind-load kind-deploy
	$(MAKE) kind-e2e KIND_E2E_ARGS="$(PYTEST_ARGS)"
	$(MAKE) faults FAULTS_MARK="faults and not heavy" $(if $(PYTEST_ARGS),FAULTS_ARGS="$(PYTEST_ARGS)")

# promtool checks the monitoring bundle's rules and the exported metrics (tests/unit/test_monitoring.py):
# built once from the Go module proxy into the cache (images/gobuild.sh; ~4 min cold); prints its path.
promtool: ## Build promtool (Prometheus' checker) from its Go module when missing, and print its path.
	@bin="$$(images/gobuild.sh --link promtool)" && echo "$$bin/promtool" \
		|| echo "make promtool: could not build promtool (needs Go): its checks in test_monitoring will skip" >&2

# The report tests render pages in a real headless browser: Debian's chromium, installed when missing
# and allowed (root on Debian); elsewhere those tests skip and say why.
browser: ## Install Debian's chromium for the browser tests, when missing (root on Debian only).
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null \
		|| { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
			&& { echo "make browser: apt-get install chromium (the report tests render in it)"; \
				apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; }; } \
		|| echo "make browser: chromium is missing and could not be installed here: the browser tests will skip"

lint: | $(PY) ## ruff on the code and tests, mypy --strict on the package (both run; either fails it).
	@status=0; \
	$(VENV)/bin/ruff check operator tests images || status=1; \
	$(VENV)/bin/mypy || status=1; \
	exit $$status

crds: | $(PY) ## Regenerate crds/ (and the Argo CD health checks) from the API models.
	$(PY) -m loopwright.api.crdgen

apply-crds: ## Install or update the CRDs in the cluster of the current KUBECONFIG.
	kubectl apply --server-side --force-conflicts -k crds/

run: | $(PY) ## Run the operator in the foreground against the current KUBECONFIG.
	@$(PY) -c 'import kopf; assert kopf.login_with_kubeconfig(settings=kopf.OperatorSettings())' 2>/dev/null || { 		echo "make run: no usable KUBECONFIG (e.g. make kind-up, then export KUBECONFIG=$(KIND_KUBECONFIG))" >&2; exit 1; }
	$(VENV)/bin/kopf run -m loopwright.operator.main --standalone $(KOPF_NAMESPACES)

demo: | $(PY) ## The whole loop on kind: data, training, canary, drift, retraining.
	$(PY) $(DEMO_SCRIPT) $(DEMO_ARGS)

bench: | $(PY) ## Run every benchmark (reports in reports/bench-<name>.md).
	@shopt -s nullglob; benches=(tests/bench/bench_*.py); \
	test $${#benches[@]} -gt 0 || { echo "make bench: no tests/bench/bench_*.py yet" >&2; exit 1; }; \
	for b in "$${benches[@]}"; do echo "== $$b"; $(PY) "$$b"; done

bench-%: | $(PY) ## Run one benchmark: make bench-<name> runs tests/bench/bench_<name>.py.
	@test -f tests/bench/bench_$*.py || { echo "make bench-$*: tests/bench/bench_$*.py does not exist" >&2; exit 1; }
	$(PY) tests/bench/bench_$*.py

# -- images and kind (a Docker engine is started, and kind built, when missing: images/) ---------------
# Build products are cached outside the repository, keyed by version: LOOPWRIGHT_CACHE moves them.
# LOOPWRIGHT_UPSTREAM_IMAGES=yes|no skips the registry probe (official Python, kindest/node and
# versitygw images where a registry answers; built here from Debian packages and Go modules where not).
KIND_CLUSTER ?= loopwright
# KIND_S3_PORT: S3 on 127.0.0.1 for a new cluster (empty: 9900 when free, else a free port).
KIND_S3_PORT ?=
KIND_KUBECONFIG ?= $(CURDIR)/.cluster/kind/kubeconfig
IMAGE_TAG := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
export KIND_CLUSTER KIND_S3_PORT KIND_KUBECONFIG IMAGE_TAG
# kind-e2e's pytest arguments; the suite's slowest tests are listed at the end (--durations).
KIND_E2E_ARGS ?= tests/e2e

.PHONY: images lock node-image kind-up kind-load kind-deploy kind-e2e kind-soak kind-monitoring kind-down faults

images: ## Build loopwright/operator and loopwright/ml from this checkout (images/build.sh).
	images/build.sh

lock: ## Re-resolve images/requirements.lock, the wheels the images install (then: make images).
	@report=$$(mktemp); trap 'rm -f $$report' EXIT; \
	env -u PIP_FIND_LINKS python3 -m pip install --quiet --dry-run --ignore-installed --only-binary=:all: \
		--report $$report '.[operator,trainer,predictor]' pip; \
	python3 images/wheels.py lock $$report images/requirements.lock
	@echo "images/requirements.lock: $$(grep -c '==' images/requirements.lock) wheels"

node-image: ## Build the kind node image with no registry (images/kind/node.sh; kind-up does it when needed).
	images/kind/node.sh

kind-up: ## Create the kind cluster $(KIND_CLUSTER) (kubeconfig: $(KIND_KUBECONFIG)).
	images/kind/cluster.sh up

kind-load: images ## Build the images and load them into the kind cluster.
	images/kind/cluster.sh load

kind-deploy: ## Install Loopwright, S3 and metrics-server into kind (manifests/overlays/kind) and wait until ready.
	images/kind/cluster.sh deploy

kind-e2e: | $(PY) ## The tests marked `cluster` (not the soak, not the faults), against the kind cluster and its in-cluster operator.
	@KUBECONFIG=$(KIND_KUBECONFIG) $(PY) -m pytest -m "cluster and not soak and not faults and not monitoring" --durations=25 $(KIND_E2E_ARGS) \
		|| { status=$$?; [ $$status -eq 5 ] || exit $$status; }  # 5: the arguments selected no cluster test

kind-soak: | $(PY) ## The soak tests (drift held ten minutes, ~11 min) against the kind cluster; figures printed.
	KUBECONFIG=$(KIND_KUBECONFIG) $(PY) -m pytest -m soak -s tests/e2e/test_soak_drift.py

kind-monitoring: | $(PY) ## manifests/monitoring on kind: Prometheus Operator + Prometheus (from Go modules), then its e2e test.
	images/kind/cluster.sh monitoring
	LOOPWRIGHT_PROMTOOL="$$($(MAKE) -s promtool)" KUBECONFIG=$(KIND_KUBECONFIG) \
		$(PY) -m pytest -m "cluster and monitoring" -s --durations=10 tests/e2e/test_monitoring_kind.py

# The fault suite: FAULTS_ARGS picks files or cases, FAULTS_MARK the marker expression.
FAULTS_ARGS ?= tests/faults
FAULTS_MARK ?= faults
faults: | $(PY) ## The fault suite on the kind cluster (tests/faults): API server, S3, node down; figures in reports/faults.md.
	@KUBECONFIG=$(KIND_KUBECONFIG) $(PY) -m pytest -m "cluster and ($(FAULTS_MARK))" --durations=25 $(FAULTS_ARGS) \
		|| { status=$$?; [ $$status -eq 5 ] || exit $$status; }

kind-down: ## Delete the kind cluster (the last one gone, the host's sysctls are put back).
	images/kind/cluster.sh down
