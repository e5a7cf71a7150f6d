# fraudpipe — the two commands a developer needs are `make test` and `make demo`.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

FRAUDPIPE_CACHE ?= $(HOME)/.cache/fraudpipe
UV := $(FRAUDPIPE_CACHE)/bin/uv
# Never let uv fetch a Python build (only package registries are reachable); keep its cache
# with the rest of ours.
export UV_PYTHON_DOWNLOADS := never
export UV_CACHE_DIR ?= $(FRAUDPIPE_CACHE)/uv-cache
# onnxruntime 1.29+ uploads usage telemetry from Linux by default; nothing here may reach out.
export ORT_DISABLE_TELEMETRY := 1
RUN := $(UV) run --frozen --quiet

PYTHON_SOURCES := libs operator scorer api producer model k8s-tests bench

.PHONY: help provision sync lint format typecheck imports unit test fuzz images e2e stack-up stack-down demo demo-stack clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

provision: ## install/build every tool into ~/.cache/fraudpipe (idempotent, cached)
	hack/provision all

sync: ## create .venv from uv.lock
	hack/provision python
	$(UV) sync --frozen --quiet

lint: sync ## ruff lint and format check
	$(RUN) ruff check $(PYTHON_SOURCES)
	$(RUN) ruff format --check $(PYTHON_SOURCES)

format: sync ## apply ruff fixes and formatting
	$(RUN) ruff check --fix $(PYTHON_SOURCES)
	$(RUN) ruff format $(PYTHON_SOURCES)

typecheck: sync ## mypy, strict on our own code
	$(RUN) mypy libs/common/src libs/testing/src operator/src scorer/src api/src producer/src model/src

imports: sync ## import-linter: services never import each other
	$(RUN) lint-imports

unit: sync ## the tests marked as needing no service (a quick loop; `make test` runs them all)
	$(RUN) pytest -m "not (kafka or redis or postgres or prometheus or registry or s3 or schema_registry or k8s or images)"

test: provision lint typecheck imports ## everything: static checks, then all tests on real services
	@rc=0; $(RUN) pytest || rc=$$?; \
	if [[ $$rc -eq 5 ]]; then echo "pytest collected no tests"; rc=0; fi; exit $$rc

fuzz: sync ## the decoder's coverage-guided fuzzer for 10 minutes (findings: build/fuzz/crash-*)
	mkdir -p build/fuzz/corpus
	$(RUN) python libs/common/tests/fuzz/decoder.py build/fuzz/corpus -max_total_time=600 \
	  -max_len=1024 -artifact_prefix=build/fuzz/

images: ## build the container images with buildah (hack/images; cached by content)
	hack/images build all

stack-up: provision ## start the local stack and print its settings
	hack/stack up

stack-down: ## stop the local stack
	hack/stack down

e2e: provision sync ## k8s-tests/e2e on the node cluster, skaffold verify included (cluster up if needed)
	hack/e2e run

demo: provision sync ## the whole product on the node cluster: operator, pipeline, live alerts
	hack/demo-cluster

demo-stack: provision sync ## the scorer alone on the loopback stack (no cluster, no root)
	hack/demo

clean: ## remove the virtualenv and caches of the linters (not the toolchain cache)
	rm -rf .venv .mypy_cache .ruff_cache .pytest_cache
