"""The patched durable-rules build is the only one that runs: installs resolve it, the service refuses
any other build with a message naming the fix, and the start log says which engine runs."""

from __future__ import annotations

import contextlib
import gc
import io
import tomllib
from pathlib import Path

import pytest
from conftest import ROOT
from packaging.requirements import Requirement

from service import serving
from service.app import create_app
from service.cli import main
from service.engine import build
from service.serving import MALLOC_ENV

PUBLISHED = "2.0.28"  # the package index's build: crashes in delete_state under load


def test_the_installed_engine_is_the_patched_build() -> None:
    version = build.require_patched_engine()
    assert version == "2.0.28+spinecds.1"
    assert build.engine_description() == "durable-rules 2.0.28+spinecds.1 (patched)"


def test_an_unpatched_engine_is_refused_with_the_fix() -> None:
    with pytest.raises(build.UnpatchedEngineError) as refused:
        build.require_patched_engine(PUBLISHED)
    message = str(refused.value)
    assert f"durable-rules {PUBLISHED} is installed" in message
    assert f"pip install --force-reinstall --no-deps {build.VENDORED_SDIST}" in message
    assert (ROOT / build.VENDORED_SDIST).is_file(), "the fix names a file the repository has"


def test_serve_and_create_app_refuse_the_unpatched_engine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(build, "engine_version", lambda: PUBLISHED)
    for name, value in MALLOC_ENV.items():  # so serve does not re-execute this process
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SPINECDS_DATABASE_URL", f"sqlite:///{tmp_path / 'x.db'}")

    def started(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("spinecds serve went on to start gunicorn")

    monkeypatch.setattr(serving, "preloaded_app", started)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(["serve", "--port", "9"]) == 2
    assert "refusing to start: durable-rules 2.0.28 is installed" in err.getvalue()
    assert gc.isenabled(), "a refused start turns the garbage collector back on"
    with pytest.raises(build.UnpatchedEngineError):
        create_app({"database_url": f"sqlite:///{tmp_path / 'y.db'}"})


def test_pip_install_resolves_only_the_patched_build() -> None:
    """``pip install .`` cannot pick the package index's 2.0.28 (the pin names the local build; it comes
    from ``--find-links vendor``, scripts/bootstrap or the image's wheelhouse)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    pin = next(Requirement(r) for r in project["dependencies"] if Requirement(r).name == "durable-rules")
    assert not pin.specifier.contains(PUBLISHED)
    assert pin.specifier.contains("2.0.28+spinecds.1")
    assert (ROOT / "vendor" / "durable_rules-2.0.28+spinecds.1.tar.gz").is_file()
