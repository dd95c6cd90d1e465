"""Copy the published value sets named in spec.yaml out of the git mirrors into committed extracts.

Each extract keeps only what the generator needs (system, code, display of every expansion member) and
records where it came from: repository, commit, path, git blob, the ValueSet's canonical url, version,
title and expansion timestamp. Run where the mirrors exist (`scripts/terminology harvest`); CI reads
the extracts only.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
SPEC = HERE / "spec.yaml"
SOURCES = HERE / "sources"


def load_spec() -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load(SPEC.read_text(encoding="utf-8"))
    return spec


def _git(mirror: str, *args: str) -> str:
    return subprocess.run(["git", "-C", mirror, *args], check=True, capture_output=True, text=True).stdout


def harvest_one(key: str, entry: dict[str, Any], repos: dict[str, Any]) -> dict[str, Any]:
    repo = repos[entry["repository"]]
    commit, path = repo["commit"], entry["path"]
    text = _git(repo["mirror"], "show", f"{commit}:{path}")
    blob = _git(repo["mirror"], "rev-parse", f"{commit}:{path}").strip()
    resource = json.loads(text)
    systems = entry.get("systems")
    members: dict[tuple[str, str], str] = {}
    for c in resource.get("expansion", {}).get("contains", []):
        if systems and c["system"] not in systems:
            continue
        members.setdefault((c["system"], c["code"]), c.get("display", ""))
    return {
        "key": key,
        "provenance": {
            "repository": f"https://github.com/{entry['repository']}",
            "commit": commit,
            "path": path,
            "blob": blob,
            "url": resource.get("url"),
            "version": resource.get("version"),
            "title": resource.get("title") or resource.get("name"),
            "publisher": resource.get("publisher"),
            "expansionTimestamp": resource.get("expansion", {}).get("timestamp"),
            "systemsKept": systems or "all",
        },
        "contains": [{"system": s, "code": c, "display": d} for (s, c), d in sorted(members.items())],
    }


def harvest() -> list[Path]:
    spec = load_spec()
    SOURCES.mkdir(exist_ok=True)
    written = []
    for key, entry in spec["sources"].items():
        extract = harvest_one(key, entry, spec["repositories"])
        out = SOURCES / f"{key}.json"
        out.write_text(json.dumps(extract, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        written.append(out)
    return written
