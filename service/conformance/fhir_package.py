"""``fhir_profiles/`` as a FHIR NPM package (https://hl7.org/fhir/packages.html): its generated files and
its release tarball.

* ``generate`` writes what is generated inside the package: ``CodeSystem-override-reason.json`` (from
  ``rules/cards.yaml``) and ``.index.json`` (index-version 1: filename, resourceType, id, url, version,
  kind, type of every resource).
* ``check`` exits 1 when a generated file is stale.
* ``build`` writes ``<name>-<version>.tgz`` with every file under ``package/`` (the layout FHIR package
  caches and registries expect); the same inputs give the same bytes.

Run with ``scripts/fhir-package generate|check|build [--out DIR]`` (docs/conformance.md).
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import sys
import tarfile
from pathlib import Path
from typing import Any

import yaml

from service.fhir_api.codesystems import override_reason_codesystem

ROOT = Path(__file__).resolve().parents[2]
PACKAGE_DIR = ROOT / "fhir_profiles"
RULES_DIR = ROOT / "rules"
INDEX_FIELDS = ("resourceType", "id", "url", "version", "kind", "type")
NOT_RESOURCES = frozenset({"package.json", ".index.json"})


def resource_files(directory: Path = PACKAGE_DIR) -> list[Path]:
    """The FHIR resources of the package folder (every ``*.json`` but package.json and .index.json)."""
    return sorted(p for p in directory.glob("*.json") if p.name not in NOT_RESOURCES)


def manifest(directory: Path = PACKAGE_DIR) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((directory / "package.json").read_text(encoding="utf-8"))
    return data


def _index(resources: dict[str, dict[str, Any]]) -> dict[str, Any]:
    files = [
        {"filename": name, **{k: doc[k] for k in INDEX_FIELDS if isinstance(doc.get(k), str)}}
        for name, doc in sorted(resources.items())
    ]
    return {"index-version": 1, "files": files}


def index(directory: Path = PACKAGE_DIR) -> dict[str, Any]:
    return _index({p.name: json.loads(p.read_text(encoding="utf-8")) for p in resource_files(directory)})


def _dump(doc: Any) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def generated(directory: Path = PACKAGE_DIR, rules_dir: Path = RULES_DIR) -> dict[Path, str]:
    """Every generated file of the package and the text it should have (the index lists the others too)."""
    cards = yaml.safe_load((rules_dir / "cards.yaml").read_text(encoding="utf-8"))
    made = {"CodeSystem-override-reason.json": override_reason_codesystem(cards["override_reasons"])}
    resources = {p.name: json.loads(p.read_text(encoding="utf-8")) for p in resource_files(directory)} | made
    out = {directory / name: _dump(doc) for name, doc in made.items()}
    out[directory / ".index.json"] = _dump(_index(resources))
    return out


def stale(directory: Path = PACKAGE_DIR, rules_dir: Path = RULES_DIR) -> list[str]:
    return [
        path.name
        for path, text in generated(directory, rules_dir).items()
        if not path.exists() or path.read_text(encoding="utf-8") != text
    ]


def write_generated(directory: Path = PACKAGE_DIR, rules_dir: Path = RULES_DIR) -> list[str]:
    changed = stale(directory, rules_dir)
    for path, text in generated(directory, rules_dir).items():
        path.write_text(text, encoding="utf-8")
    return changed


def build(out_dir: Path, directory: Path = PACKAGE_DIR) -> Path:
    """The release tarball: package/package.json, package/.index.json, package/<resource>.json."""
    problems = stale(directory)
    if problems:
        raise ValueError(f"stale generated files {problems}: run scripts/fhir-package generate")
    meta = manifest(directory)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{meta['name']}-{meta['version']}.tgz"
    names = ["package.json", ".index.json", *(p.name for p in resource_files(directory))]
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in names:
            data = (directory / name).read_bytes()
            info = tarfile.TarInfo(f"package/{name}")
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    with gzip.GzipFile(target, "wb", mtime=0) as gz:
        gz.write(raw.getvalue())
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/fhir-package", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["generate", "check", "build"])
    parser.add_argument("--out", type=Path, default=ROOT / "build", help="where build writes the tarball")
    args = parser.parse_args(argv)
    if args.command == "generate":
        changed = write_generated()
        print(f"wrote {', '.join(changed) if changed else 'nothing (up to date)'}")
        return 0
    if args.command == "check":
        problems = stale()
        if problems:
            print(f"stale: {', '.join(problems)} (run scripts/fhir-package generate)", file=sys.stderr)
            return 1
        print("fhir_profiles/ generated files are up to date")
        return 0
    try:
        target = build(args.out)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
