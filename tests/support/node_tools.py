"""Independent FHIR tools from npm for the tests (service/conformance/npm_tools.py). Skipped (with the
reason) when ``node``/``npm`` are absent, unless ``SPINECDS_REQUIRE_NODE=1`` (CI), where their absence or a
failed install fails the test."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from service.conformance.npm_tools import fhir_cache, install, node

__all__ = ["fhir_cache", "install", "node", "require_node", "shared_install"]


def require_node() -> None:
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if not missing:
        return
    reason = f"{' and '.join(missing)} not installed (Debian: apt-get install nodejs npm)"
    if os.environ.get("SPINECDS_REQUIRE_NODE") == "1":
        pytest.fail(f"SPINECDS_REQUIRE_NODE=1 but {reason}")
    pytest.skip(reason)


_installed: list[Path] = []


def shared_install() -> Path:
    """One npm install per test process, shared by every module that checks with Node (removed at exit)."""
    require_node()
    if not _installed:
        where = Path(tempfile.mkdtemp(prefix="spinecds-npm-"))
        atexit.register(shutil.rmtree, where, ignore_errors=True)
        _installed.append(install(where / "tools"))
    return _installed[0]
