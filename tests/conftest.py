"""Shared fixtures: the tests use real namespaces, so they need root (as CI runs them)."""

from __future__ import annotations

import os

import pytest


def pytest_configure(config: pytest.Config) -> None:
    if os.geteuid() != 0:
        raise pytest.UsageError(
            "podside's tests create network namespaces: run them as root (make test does)"
        )
