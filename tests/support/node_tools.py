"""Independent FHIR tools from npm for the tests (service/conformance/npm_tools.py). Skipped (with the
reason) when ``node``/``npm`` are absent, unless ``SPINECDS_REQUIRE_NODE=1`` (CI), where their absence or a
failed install fails the test."""

from __future__ import annotations

import os
import shutil

import pytest

from service.conformance.npm_tools import fhir_cache, install, node

__all__ = ["fhir_cache", "install", "node", "require_node"]


def require_node() -> None:
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if not missing:
        return
    reason = f"{' and '.join(missing)} not installed (Debian: apt-get install nodejs npm)"
    if os.environ.get("SPINECDS_REQUIRE_NODE") == "1":
        pytest.fail(f"SPINECDS_REQUIRE_NODE=1 but {reason}")
    pytest.skip(reason)
