"""What the image build needs, checked without an engine: buildah/podman see the files the Dockerfile
copies, a CA bundle reaches every pip step as a build secret, and the documented podman build keeps
the HEALTHCHECK."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

DOCKERFILE = ROOT / "docker" / "Dockerfile"
IGNORE = ROOT / "docker" / "Dockerfile.dockerignore"


def _instructions() -> list[str]:
    """Dockerfile instructions with continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_dockerignore_reincludes_folders_not_files_inside_excluded_folders() -> None:
    patterns = [p.strip() for p in IGNORE.read_text(encoding="utf-8").splitlines() if p.strip() and p[0] != "#"]
    assert patterns[0] == "**", "everything is excluded first"
    reincluded = [p[1:] for p in patterns if p.startswith("!")]
    for path in reincluded:
        parent = path.rstrip("/").rpartition("/")[0]
        assert not parent or f"{parent}/" in reincluded, f"!{path}: buildah ignores a file under an excluded folder"
    for line in _instructions():
        if line.startswith("COPY ") and "--from=" not in line:
            *sources, _dest = line.split()[1:]
            for source in sources:
                top = source.split("/")[0] + ("/" if "/" in source else "")
                assert top in reincluded or source in reincluded, f"COPY {source} is excluded by the .dockerignore"


def test_every_pip_step_of_the_build_can_use_a_ca_bundle_secret() -> None:
    pip_steps = [line for line in _instructions() if line.startswith("RUN") and "pip wheel" in line]
    assert len(pip_steps) == 3
    for step in pip_steps:
        assert "--mount=type=secret,id=ca_bundle,required=false" in step
        assert "export PIP_CERT=/run/secrets/ca_bundle" in step
    assert not DOCKERFILE.read_text(encoding="utf-8").startswith("# syntax="), "no frontend image to pull"


def test_documented_builds_keep_the_healthcheck_and_verify_tls() -> None:
    docs = (ROOT / "docs" / "deployment.md").read_text(encoding="utf-8")
    assert "podman build --format docker" in docs
    assert "--secret id=ca_bundle,src=" in docs
    assert any(line.startswith("HEALTHCHECK") for line in _instructions())


def test_the_build_stage_can_skip_apt_when_its_image_has_a_compiler() -> None:
    lines = _instructions()
    assert "ARG BUILD_IMAGE=${PYTHON_IMAGE}" in lines and "FROM ${BUILD_IMAGE} AS build" in lines
    (apt,) = [line for line in lines if "apt-get install" in line]
    assert apt.startswith("RUN if ! command -v gcc"), "apt-get only when the image has no compiler"
    docs = (ROOT / "docs" / "deployment.md").read_text(encoding="utf-8")
    assert "--build-arg BUILD_IMAGE=" in docs


def test_the_image_sbom_command_describes_the_patched_engine(tmp_path: Path) -> None:
    """The Dockerfile's cyclonedx-py command, run on this checkout's venv instead of the build's scratch one."""
    tool = ROOT / ".venv" / "bin" / "cyclonedx-py"
    if not tool.exists():
        pytest.skip("cyclonedx-bom not installed (scripts/bootstrap installs the test extra)")
    (step,) = [line for line in _instructions() if "cyclonedx-py environment" in line]
    command = step.split("&& /tmp/sbom-tool/bin/cyclonedx-py ", 1)[1].split()
    assert command[-1] == "/tmp/runtime/bin/python" and "-o" in command
    command[-1] = sys.executable
    command[command.index("-o") + 1] = str(tmp_path / "sbom.cdx.json")
    run = subprocess.run([str(tool), *command], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    sbom = json.loads((tmp_path / "sbom.cdx.json").read_text(encoding="utf-8"))
    assert sbom["bomFormat"] == "CycloneDX"
    assert sbom["metadata"]["component"]["name"] == "spinecds"
    versions = {c["name"].lower().replace("_", "-"): c.get("version") for c in sbom["components"]}
    assert versions["durable-rules"] == "2.0.28+spinecds.1", "the SBOM names the patched engine"
    assert "COPY --from=build /wheels/sbom.cdx.json /opt/spinecds/sbom.cdx.json" in _instructions()
