# podside — developer entry points. `make demo` and `make test` are the two set-up commands;
# both install what they need first (Debian packages as root, a .venv with podside editable).
SHELL := /bin/bash
PY := .venv/bin/python
APT_PACKAGES := iproute2 nftables busybox-static dnsmasq-base \
	musl-tools gdb curl nginx-light wrk socat procps delve golang-go acl e2fsprogs util-linux
INSTALL_STAMP := .venv/.installed

.PHONY: install demo test lint typecheck unit quick bench e2e clean extension vsix agent-image

install: $(INSTALL_STAMP)

$(INSTALL_STAMP): pyproject.toml Makefile
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	  if [ -n "$$missing" ]; then \
	    echo "installing Debian packages: $$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  fi; \
	fi
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(INSTALL_STAMP)

demo: install
	$(PY) -m podside.demo

lint: install
	.venv/bin/ruff check server agent tests examples
	.venv/bin/ruff format --check server agent tests examples

typecheck: install
	.venv/bin/mypy

unit: install
	.venv/bin/pytest -m "not bench"

# The pure decisions only: no namespaces, no sandbox, so no root and seconds (not part of `test`,
# which runs them anyway inside `unit`).
quick: install
	.venv/bin/pytest -q tests/unit tests/protocol

test: lint typecheck extension unit e2e

bench: install
	.venv/bin/python -m tests.bench

clean:
	rm -rf .venv .cache build *.egg-info

# The editor extension: npm workspace at the root (package.json), sources in editor-extension/;
# `make test` runs it: strict tsc and the unit tests behind the seam (node --test).
extension:
	npm ci --no-audit --no-fund
	npm run check
	npm test

vsix: extension
	npm run vsix

# Real VS Code (code-server) in a real browser against the sandbox; see tests/editor/e2e/.
e2e: install vsix
	tests/editor/e2e/run

# A prebuilt agent image (`podside exec --agent-image`), for clusters that cannot pull the
# python image the agent otherwise runs in: `make agent-image AGENT_IMAGE=registry/podside/agent:TAG`,
# then push it. Builds with docker, podman or buildah, whichever is here first.
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
AGENT_IMAGE ?= ghcr.io/podside/agent:$(VERSION)
agent-image:
	@tool=$$(for t in docker podman buildah; do command -v $$t >/dev/null && { echo $$t; break; }; done); \
	if [ -z "$$tool" ]; then \
	  echo "make agent-image: needs docker, podman or buildah, and none is installed (without --agent-image no image is needed)" >&2; \
	  exit 1; \
	fi; \
	if [ "$$tool" = buildah ]; then set -x; buildah bud -f agent/Dockerfile -t $(AGENT_IMAGE) .; \
	else set -x; $$tool build -f agent/Dockerfile -t $(AGENT_IMAGE) .; fi
