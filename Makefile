# jobpool — every target does its own set-up, so each works on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# pytest-xdist workers of `make test`: the tests mostly wait on clusters, so more than the cores.
TEST_WORKERS ?= 3
# Locally built control-plane binaries and the virtualenv come first on PATH.
export PATH := $(CURDIR)/.tools/bin:$(CURDIR)/$(BIN):$(PATH)

.PHONY: help crd demo demo-cluster demo-plot lint test test-fast test-cold test-builds venv lock redis prometheus browser \
        ui-screenshots tools cluster-up cluster-down bench bench-operator bench-kueue bench-memory bench-replication soak \
        images real-node node-packages clean kind-node-image kind-up kind-down test-kind

## This list: each target with the comment above it.
help:
	@awk '/^## /{doc = doc (doc ? " " : "") substr($$0, 4); next} \
	     /^[a-z][a-z-]*:/ && doc {split($$0, t, ":"); printf "  make %-18s %s\n", t[1], doc} {doc = ""}' \
	     $(MAKEFILE_LIST)

# The tested versions: constraints.txt is the lock (`make lock` re-resolves it).
$(BIN)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q --constraint constraints.txt -e '.[test]'
	touch $@

## The virtualenv .venv with the project and its locked test dependencies.
venv: $(BIN)/.installed

## Re-resolve the dependencies of pyproject.toml into constraints.txt (then run make test).
lock:
	@PYTHON=$(PYTHON) bash scripts/lock.sh

## Regenerates the CRD (charts/jobpool/crds) from the API models; a unit test fails while it is stale.
crd: venv
	$(BIN)/python -m jobpool.api.crd > charts/jobpool/crds/jobpool.dev_jobpools.yaml

## Debian's redis-server, when it is missing.
redis:
	@bash scripts/ensure-redis.sh

## Debian's prometheus (promtool and a real Prometheus for the monitoring tests).
prometheus:
	@bash scripts/ensure-prometheus.sh

## Debian's packages of the images and the real node (docker.io, containerd, runc, CNI; as root).
node-packages:
	@bash scripts/ensure-node-packages.sh

## Debian's chromium and chromium-driver, which the web UI's browser tests drive (Selenium).
browser:
	@bash scripts/ensure-browser.sh

## The web UI's screenshots in docs/ (the README shows them), taken by its browser test.
ui-screenshots: venv redis browser
	JOBPOOL_UI_SCREENSHOTS=docs $(BIN)/python -m pytest -q tests/integration/ui/test_ui_browser.py -k drain

## The local control plane, kwok, helm and Karpenter from pinned Go modules into .tools/bin.
tools:
	@bash tools/build.sh

## jobpool-operator:dev, jobpool-worker:dev, jobpool-redis:dev, jobpool-examples:dev, built offline.
images: venv node-packages
	@bash tools/images/images.sh build

## The main job: a local queue, two workers, 2,000 jobs, the final status.
demo: venv redis
	@bash scripts/demo.sh

## The operator end to end on the local control plane: a JobPool scales up, completes, scales down.
## REAL_NODE=1: on the real node, with the chart's pods and real worker containers.
## CLUSTER=kind: the same on a kind cluster of the node image of `make kind-node-image`.
demo-cluster: venv redis tools $(if $(REAL_NODE),real-node) $(if $(filter kind,$(CLUSTER)),kind-node-image)
	@REAL_NODE=$(REAL_NODE) CLUSTER=$(CLUSTER) bash scripts/demo_cluster.sh

## The demo-cluster run drawn from the operator's metrics into docs/demo-scaling.svg (in the README).
demo-plot: venv redis tools
	@mkdir -p docs
	@JOBPOOL_DEMO_PLOT=docs/demo-scaling.svg bash scripts/demo_cluster.sh

## Everything the suite runs, built before pytest starts (tools, images, the real node), timed.
test-builds: venv node-packages
	@bash scripts/test-builds.sh

## The linter, the formatter's check and the type check (ruff check, ruff format --check, mypy).
lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## The whole test suite, against a real redis-server and a real control plane, on pytest-xdist workers.
test: venv redis prometheus browser test-builds
	$(BIN)/python -m pytest -n $(TEST_WORKERS)

## The whole suite as a fresh machine runs it: a fresh clone, empty Go, pip, tools and image caches.
test-cold:
	@bash scripts/test-cold.sh

## Under two minutes: no control plane, no images or real node, nothing marked slow.
test-fast: venv redis prometheus
	$(BIN)/python -m pytest -m 'not cluster and not slow and not realnode and not images'

## The local control plane in .cluster with kwok nodes. REAL_NODE=1 adds one real node (kubelet,
## containerd) that runs the images of `make images`.
cluster-up: venv tools $(if $(REAL_NODE),real-node)
	$(BIN)/python tools/localcluster.py up --dir .cluster $(if $(REAL_NODE),--real-node)

## The real node's kubelet, kube-proxy, CoreDNS, NetworkPolicy enforcement and images.
real-node: images
	@bash tools/build.sh kubernetes-node coredns kube-network-policies
	@bash tools/images/images.sh node

## Stops the cluster of cluster-up.
cluster-down:
	@if [ -x $(BIN)/python ]; then $(BIN)/python tools/localcluster.py down --dir .cluster; fi

## kind's node image assembled offline (jobpool-kind-node:<Kubernetes version>), and kind itself.
kind-node-image: tools real-node
	@bash tools/build.sh kind kubeadm cri-tools coredns-kind
	@bash tools/images/kind_node.sh

## A kind cluster of that image (tools/kind/cluster.yaml) with the project's images loaded.
kind-up: kind-node-image
	@bash tools/kind/cluster.sh up

## Deletes the kind cluster of kind-up with its Docker network and routes: nothing is left.
kind-down:
	@if [ -x .tools/bin/kind ]; then bash tools/kind/cluster.sh down; fi

## The chart and real-pod suites on a kind cluster (the one of `make kind-up`, else its own).
test-kind: venv redis kind-node-image
	JOBPOOL_KIND=1 $(BIN)/python -m pytest tests/e2e/test_kind.py tests/e2e/test_real_node.py

## The data plane's figures, each as a ratio to bare redis-py on the same Redis (docs/benchmarks.md).
bench: venv redis
	$(BIN)/python bench/bench_queue.py

## Redis bytes per waiting job, per result and per dead letter (the sizing figures of docs/operations.md, "Memory").
bench-memory: venv redis
	$(BIN)/python bench/bench_memory.py

## What spec.queue.durability: replicated costs, and one shard's ceiling (docs/queue.md's sizing).
bench-replication: venv redis
	$(BIN)/python bench/bench_replication.py

## Chaos soak: 20,000 jobs through worker kills, a Redis restart and malformed entries (the
## test suite runs a short one: tests/integration/test_soak.py).
soak: venv redis
	$(BIN)/python bench/soak.py --jobs 20000

## The operator at 1,000 pools on kwok: time to Ready, RSS, idle API writes and Redis round trips.
bench-operator: venv redis tools
	$(BIN)/python bench/bench_operator.py

## Kueue's reaction to two teams' backlogs on one ClusterQueue (examples/09-kueue), printed, not asserted.
bench-kueue: venv redis tools
	$(BIN)/python bench/bench_kueue.py

## Removes the virtualenv, the clusters, the demos' data and the project's Docker daemon data.
clean: cluster-down
	@bash tools/images/images.sh clean
	rm -rf $(VENV) .cluster .demo .demo-cluster
