# podside — developer entry points. `make demo` and `make test` are the two set-up commands;
# both install what they need first (Debian packages as root, a .venv with podside editable).
SHELL := /bin/bash
PY := .venv/bin/python
APT_PACKAGES := iproute2 nftables libnftables1 python3-nftables busybox-static dnsmasq-base \
	musl-tools gdb curl nginx-light wrk socat procps delve golang-go
INSTALL_STAMP := .venv/.installed

.PHONY: install demo test lint typecheck unit bench e2e clean extension vsix

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
