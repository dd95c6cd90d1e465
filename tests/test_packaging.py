"""The wheel builds without deprecation warnings (SPDX license string, setuptools pinned in
build-system) and carries the licence expression."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from conftest import ROOT


def test_wheel_builds_cleanly_with_an_spdx_license(tmp_path: Path) -> None:
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    assert "project.license" not in build.stderr and "BuildBackendWarning" not in build.stderr, build.stderr[-3000:]
    (wheel,) = tmp_path.glob("spinecds-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        metadata = zf.read(next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    assert "License-Expression: Apache-2.0" in metadata
    assert "Requires-Dist: durable-rules==2.0.28+spinecds.1" in metadata
