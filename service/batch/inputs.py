"""Input files -> CDS Hooks requests, one per patient, as an EHR would send them.

Recognised inputs: the records of ``service.cds.request_builder.subjects_from_json`` (a CDS Hooks request, a
FHIR Bundle, a patient case file, a Patient) read from a JSON file, and an NDJSON file or a folder of
``*.ndjson`` files (FHIR bulk export): one request per Patient. In an NDJSON export only the resource types
that were exported are documented; the rest stay unknown, as they would with a missing prefetch key. The
requests are built by ``service/cds/request_builder.py``; this module only reads files.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from service.cds.request_builder import BadInput, subjects_from_json, subjects_from_resources
from service.cds.request_builder import Subject as Subject  # spinecds evaluate's unit of work


def load_path(path: Path, hook: str = "patient-view") -> list[Subject]:
    """All subjects in a file or NDJSON folder; raises BadInput when it is not a recognised input."""
    if path.is_dir():
        files = sorted(path.glob("*.ndjson"))
        if not files:
            raise BadInput(f"{path}: folder holds no *.ndjson files")
        return subjects_from_resources(_read_ndjson(files), str(path), hook, exported=_types_in(files))
    if not path.is_file():
        raise BadInput(f"{path}: no such file or folder")
    if path.suffix == ".ndjson":
        return subjects_from_resources(_read_ndjson([path]), str(path), hook, exported=_types_in([path]))
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInput(f"{path}: not JSON ({exc})") from exc
    return subjects_from_json(data, str(path), hook)


def _types_in(files: Iterable[Path]) -> set[str]:
    return {f.name.split(".", 1)[0] for f in files}


def _read_ndjson(files: list[Path]) -> list[dict[str, Any]]:
    return [item for file in files for item in read_ndjson(file)]


def read_ndjson(file: Path) -> Iterator[dict[str, Any]]:
    """The resources of one NDJSON file, line by line; a line that is not a FHIR resource is bad input."""
    with file.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                raise BadInput(f"{file}:{number}: not a JSON line ({exc.msg})") from exc
            if not isinstance(item, dict) or not isinstance(item.get("resourceType"), str):
                raise BadInput(f"{file}:{number}: not a FHIR resource")
            yield item


def iter_paths(paths: Iterable[Path]) -> Iterator[Path]:
    """Expand folders that hold JSON files (not NDJSON exports) into their files."""
    for path in paths:
        if path.is_dir() and not any(path.glob("*.ndjson")):
            yield from sorted(p for p in path.rglob("*.json") if p.is_file())
        else:
            yield path
