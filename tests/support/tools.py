"""External programs the tests use: found, or the test is skipped with the reason (failed in CI).

``.ci/run`` installs every program listed in its ``TOOLS`` table and sets SPINECDS_REQUIRE_TOOLS=1,
so there a missing program fails the test instead of hiding it; tests/test_ci_tools.py checks that
every program a test or bench module looks for is in that table.
"""

from __future__ import annotations

import os
import shutil

import pytest


def require_executable(name: str, package: str) -> str:
    """The path of ``name``; else skip (fail under SPINECDS_REQUIRE_TOOLS=1) naming the Debian package."""
    found = shutil.which(name) or next(
        (f"{d}/{name}" for d in ("/usr/sbin", "/sbin") if os.access(f"{d}/{name}", os.X_OK)), None
    )
    if found:
        return found
    reason = f"{name} is not installed (apt-get install -y {package}; .ci/run installs it)"
    if os.environ.get("SPINECDS_REQUIRE_TOOLS") == "1":
        pytest.fail(f"SPINECDS_REQUIRE_TOOLS=1 but {reason}")
    pytest.skip(reason)
