"""fhir_profiles/ is a FHIR NPM package: only resources inside, a current .index.json and generated
CodeSystem, a release tarball with the package/ layout; fhir-package-loader (npm) loads it with R4 core and
mCODE STU4 and resolves every canonical it references; SUSHI builds on it; its snapshots are what
fhir-snapshot-generator makes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT
from support import node_tools

from service.conformance import fhir_package

PACKAGE = ROOT / "fhir_profiles"


@pytest.fixture(scope="module")
def npm_tools() -> Path:
    return node_tools.shared_install()


def test_package_folder_holds_only_fhir_resources_and_its_manifest() -> None:
    manifest = fhir_package.manifest(PACKAGE)
    assert manifest["name"] == "spinecds.fhir" and manifest["fhirVersions"] == ["4.0.1"]
    assert manifest["canonical"] == "https://fhir.spinecds.org"
    assert manifest["dependencies"] == {"hl7.fhir.r4.core": "4.0.1", "hl7.fhir.us.mcode": "4.0.0"}
    for path in sorted(PACKAGE.iterdir()):
        assert path.is_file(), path.name
        if path.name in ("package.json", ".index.json"):
            continue
        resource = json.loads(path.read_text(encoding="utf-8"))
        assert path.name == f"{resource['resourceType']}-{resource['id']}.json"


def test_generated_files_are_current() -> None:
    assert fhir_package.stale() == [], "run scripts/fhir-package generate"


def test_index_lists_every_resource_with_its_metadata() -> None:
    index = json.loads((PACKAGE / ".index.json").read_text(encoding="utf-8"))
    assert index["index-version"] == 1
    files = {e["filename"]: e for e in index["files"]}
    assert set(files) == {p.name for p in fhir_package.resource_files(PACKAGE)}
    sd = files["StructureDefinition-spine-sins.json"]
    assert sd == {
        "filename": "StructureDefinition-spine-sins.json",
        "resourceType": "StructureDefinition",
        "id": "spine-sins",
        "url": "https://fhir.spinecds.org/StructureDefinition/spine-sins",
        "version": "0.1.0",
        "kind": "resource",
        "type": "Observation",
        "derivation": "constraint",
    }


def test_a_stale_index_is_detected(tmp_path: Path) -> None:
    copy = tmp_path / "fhir_profiles"
    copy.mkdir()
    for path in PACKAGE.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    assert fhir_package.stale(copy) == []
    sd = json.loads((copy / "StructureDefinition-spine-sins.json").read_text(encoding="utf-8"))
    sd["version"] = "0.1.1"
    (copy / "StructureDefinition-spine-sins.json").write_text(json.dumps(sd), encoding="utf-8")
    assert fhir_package.stale(copy) == [".index.json"]
    with pytest.raises(ValueError, match="stale"):
        fhir_package.build(tmp_path / "out", copy)


def _members(tgz: Path) -> dict[str, bytes]:
    with tarfile.open(tgz) as tar:
        out = {}
        for m in tar.getmembers():
            assert m.isfile(), m.name
            data = tar.extractfile(m)
            assert data is not None
            out[m.name] = data.read()
        return out


def test_release_tarball_has_the_package_layout_and_is_reproducible(tmp_path: Path) -> None:
    tgz = fhir_package.build(tmp_path / "a")
    assert tgz.name == "spinecds.fhir-0.1.0.tgz"
    members = _members(tgz)
    assert list(members)[:2] == ["package/package.json", "package/.index.json"]
    expected = {f"package/{p.name}" for p in fhir_package.resource_files(PACKAGE)}
    assert set(members) - {"package/package.json", "package/.index.json"} == expected
    for name, data in members.items():
        assert data == (PACKAGE / name.removeprefix("package/")).read_bytes()
    assert fhir_package.build(tmp_path / "b").read_bytes() == tgz.read_bytes()


def _load_with_fpl(npm_tools: Path, tmp_path: Path) -> dict[str, Any]:
    tgz = fhir_package.build(tmp_path / "dist")
    cache = node_tools.fhir_cache(npm_tools, tgz, tmp_path / "fhir-cache")
    done = node_tools.node(
        ROOT / "tests/node/load_package.cjs",
        npm_tools,
        str(cache),
        "hl7.fhir.r4.core#4.0.1",
        "hl7.fhir.us.mcode#4.0.0",
        "spinecds.fhir#0.1.0",
    )
    assert done.returncode in (0, 1), done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout)
    result["returncode"] = done.returncode
    return result


def test_fhir_package_loader_loads_the_package_and_resolves_every_canonical(npm_tools: Path, tmp_path: Path) -> None:
    result = _load_with_fpl(npm_tools, tmp_path)
    assert set(result["statuses"].values()) == {"LOADED"}, result["statuses"]
    assert result["resources"] == len(fhir_package.resource_files(PACKAGE))
    assert result["references"] > 100
    assert result["warnings"] == [], result["warnings"][:5]
    assert result["errors"] == [] and result["unresolved"] == {}, {k: len(v) for k, v in result["unresolved"].items()}
    assert result["returncode"] == 0
    # snapshots inherit mCODE's references into its own dependencies (US Core 6.1.0, the HL7 extensions
    # and terminology packages), which no reachable registry has: they are the only ones left unresolved
    mcode_dependencies = (
        "http://hl7.org/fhir/us/core/",
        "http://loinc.org/vs/",
        "http://hl7.org/fhir/StructureDefinition/elementdefinition-type-must-support",
    )
    assert [u for u in result["unresolvedInherited"] if not u.startswith(mcode_dependencies)] == []


def test_committed_snapshots_are_what_fhir_snapshot_generator_makes(npm_tools: Path) -> None:
    snapshots = fhir_package.generate_snapshots(npm_tools)
    assert set(snapshots) == {
        json.loads(p.read_text(encoding="utf-8"))["url"] for p in PACKAGE.glob("StructureDefinition-*.json")
    }
    assert fhir_package.stale_snapshots(snapshots) == [], "run scripts/fhir-package snapshots"


def _sushi(npm_tools: Path, tmp_path: Path, extra_fsh: str = "") -> tuple[int, str]:
    tgz = fhir_package.build(tmp_path / "dist")
    home = tmp_path / "home"
    node_tools.fhir_cache(npm_tools, tgz, home / ".fhir" / "packages")
    project = tmp_path / "project"
    shutil.copytree(ROOT / "tests/node/sushi", project)
    if extra_fsh:
        (project / "input/fsh/extra.fsh").write_text(extra_fsh, encoding="utf-8")
    done = subprocess.run(
        [str(npm_tools / "node_modules/.bin/sushi"), "build", str(project)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, "HOME": str(home)},
    )
    return done.returncode, done.stdout + done.stderr


def test_sushi_builds_profiles_and_instances_on_the_package(npm_tools: Path, tmp_path: Path) -> None:
    returncode, log = _sushi(npm_tools, tmp_path)
    assert returncode == 0 and "0 Errors" in log, log[-3000:]
    assert "Loaded spinecds.fhir#0.1.0" in log and "Loaded hl7.fhir.us.mcode#4.0.0" in log
    warnings = [line for line in log.splitlines() if line.startswith("warn")]
    # only SUSHI's automatic dependencies (#latest), which need the FHIR registry, are missing
    assert all("automatically-provided" in w for w in warnings), warnings
    generated = tmp_path / "project/fsh-generated/resources"
    sd = json.loads((generated / "StructureDefinition-sins-at-one-site.json").read_text(encoding="utf-8"))
    assert sd["baseDefinition"] == "https://fhir.spinecds.org/StructureDefinition/spine-sins"
    ecog = json.loads((generated / "Observation-ecog-example.json").read_text(encoding="utf-8"))
    assert ecog["meta"]["profile"] == ["https://fhir.spinecds.org/StructureDefinition/spine-ecog-performance-status"]


def test_sushi_enforces_the_package_constraints(npm_tools: Path, tmp_path: Path) -> None:
    """A control: SUSHI rejects what our profiles exclude (a SINS Quantity, an ECOG instant)."""
    fsh = """
Instance: sins-quantity
InstanceOf: https://fhir.spinecds.org/StructureDefinition/spine-sins
Usage: #example
* status = #final
* code = https://fhir.spinecds.org/CodeSystem/spinecds-local#sins-total
* effectiveDateTime = "2026-05-30"
* valueQuantity = 9 '1'

Instance: ecog-instant
InstanceOf: https://fhir.spinecds.org/StructureDefinition/spine-ecog-performance-status
Usage: #example
* status = #final
* category = http://terminology.hl7.org/CodeSystem/observation-category#survey
* subject = Reference(Patient/p1)
* code = http://loinc.org#89247-1
* effectiveInstant = "2026-05-30T10:00:00Z"
* valueInteger = 1
"""
    returncode, log = _sushi(npm_tools, tmp_path, fsh)
    errors = [line for line in log.splitlines() if line.startswith("error")]
    assert returncode == len(errors) == 4, log[-3000:]  # each: the type does not exist, so value[x] is missing
    assert any("valueQuantity" in e for e in errors) and any("effectiveInstant" in e for e in errors), errors
