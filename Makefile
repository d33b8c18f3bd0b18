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

DEMO_SCRIPT := tests/demo/demo.py
# `make demo CLUSTER=kind` uses kind when kind and a Docker engine are there (else the local cluster);
# DEMO_ARGS passes more options, e.g. DEMO_ARGS=--only-demo-namespace on a shared cluster.
CLUSTER ?= local
CLUSTER_SCRIPT := tests/cluster/cluster.py
# `make run` watches the namespaces of LOOPWRIGHT_NAMESPACES (comma list), or the whole cluster.
comma := ,
KOPF_NAMESPACES = $(if $(strip $(LOOPWRIGHT_NAMESPACES)),$(foreach ns,$(subst $(comma), ,$(LOOPWRIGHT_NAMESPACES)),--namespace=$(ns)),--all-namespaces)

.PHONY: help install proto test lint crds apply-crds run demo cluster-up cluster-down bench

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

test: | $(PY) ## Run the test suite (tests marked `cluster` use a real API server; see tests/conftest.py).
	$(PY) -m pytest $(PYTEST_ARGS)

lint: | $(PY) ## ruff on the code and tests, mypy --strict on the package (both run; either fails it).
	@status=0; \
	$(VENV)/bin/ruff check operator tests || status=1; \
	$(VENV)/bin/mypy || status=1; \
	exit $$status

crds: | $(PY) ## Regenerate crds/ from the API models.
	$(PY) -m loopwright.api.crdgen

apply-crds: ## Install or update the CRDs in the cluster of the current KUBECONFIG.
	kubectl apply --server-side --force-conflicts -f crds/

run: | $(PY) ## Run the operator in the foreground against the current KUBECONFIG.
	@$(PY) -c 'import kubernetes; kubernetes.config.load_kube_config()' 2>/dev/null || { 		echo "make run: no usable KUBECONFIG (e.g. make cluster-up, then export KUBECONFIG from .cluster/env)" >&2; exit 1; }
	$(VENV)/bin/kopf run -m loopwright.operator.main --standalone $(KOPF_NAMESPACES)

demo: | $(PY) ## The whole loop on a cluster (CLUSTER=local|kind): data, training, canary, drift, retraining.
	$(PY) $(DEMO_SCRIPT) --cluster $(CLUSTER) $(DEMO_ARGS)

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

# -- images and kind (Docker needed; CI: .github/workflows/kind-e2e.yaml) ---------------------------
DOCKER ?= docker
KIND ?= kind
KIND_CLUSTER ?= loopwright
KIND_KUBECONFIG := .cluster/kind/kubeconfig
IMAGE_TAG := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
IMAGES := operator trainer predictor
# kind's MinIO as the host sees it (tests/kind/kind-config.yaml maps NodePort 30900 here) and its
# development credentials (manifests/overlays/kind/s3.yaml).
KIND_S3_ENV := AWS_ENDPOINT_URL=http://127.0.0.1:9900 AWS_ACCESS_KEY_ID=loopwright \
	AWS_SECRET_ACCESS_KEY=loopwright-kind-only AWS_DEFAULT_REGION=us-east-1
KIND_E2E_ARGS ?= -m cluster tests/e2e
KUBECTL_KIND := kubectl --kubeconfig=$(KIND_KUBECONFIG)

.PHONY: images kind-up kind-load kind-deploy kind-e2e kind-down

images: ## Build the operator, trainer and predictor images (needs a Docker engine).
	@command -v $(DOCKER) >/dev/null && $(DOCKER) info >/dev/null 2>&1 || { \
		echo "make images: needs a running Docker engine ('$(DOCKER) info' failed here); nothing was built." >&2; \
		echo "  The images are built by CI (.github/workflows/kind-e2e.yaml); without Docker use make cluster-up." >&2; \
		exit 1; }
	@for target in $(IMAGES); do \
		echo "== loopwright/$$target:$(IMAGE_TAG)"; \
		$(DOCKER) build -f images/Dockerfile --target $$target -t loopwright/$$target:$(IMAGE_TAG) . || exit 1; \
	done

kind-up: ## Create the kind cluster (tests/kind/kind-config.yaml); kubeconfig in .cluster/kind/.
	@command -v $(KIND) >/dev/null || { echo "make kind-up: needs kind (https://kind.sigs.k8s.io) on PATH" >&2; exit 1; }
	@mkdir -p $(dir $(KIND_KUBECONFIG))
	@$(KIND) get clusters 2>/dev/null | grep -qx '$(KIND_CLUSTER)' \
		|| $(KIND) create cluster --name $(KIND_CLUSTER) --config tests/kind/kind-config.yaml --wait 180s
	$(KIND) get kubeconfig --name $(KIND_CLUSTER) > $(KIND_KUBECONFIG)

kind-load: images ## Build the images and load them into the kind cluster.
	@for target in $(IMAGES); do \
		$(KIND) load docker-image loopwright/$$target:$(IMAGE_TAG) --name $(KIND_CLUSTER) || exit 1; \
	done

kind-deploy: ## Install Loopwright and MinIO into kind (manifests/overlays/kind) and wait until ready.
	$(KUBECTL_KIND) apply --server-side --force-conflicts -k manifests/overlays/kind
	$(KUBECTL_KIND) -n loopwright-system rollout status deployment/s3 --timeout=180s
	$(KUBECTL_KIND) -n loopwright-system wait --for=condition=complete job/s3-bucket --timeout=180s
	$(KUBECTL_KIND) -n loopwright-system rollout status deployment/loopwright-operator --timeout=180s

kind-e2e: | $(PY) ## The end-to-end tests against kind, with the operator running in the cluster.
	KUBECONFIG=$(abspath $(KIND_KUBECONFIG)) LOOPWRIGHT_E2E_OPERATOR=in-cluster $(KIND_S3_ENV) \
		$(PY) -m pytest $(KIND_E2E_ARGS)

kind-down: ## Delete the kind cluster.
	$(KIND) delete cluster --name $(KIND_CLUSTER)
	rm -f $(KIND_KUBECONFIG)
