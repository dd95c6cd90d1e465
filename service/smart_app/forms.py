"""The app's forms (``forms.yaml``): what each asks, which facts it answers, which codes it writes."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml

FORMS_FILE = Path(__file__).resolve().parent / "forms.yaml"


@cache
def forms_document() -> dict[str, Any]:
    # the C loader (a safe loader; 2 ms instead of 17-30 ms in the first call of each worker)
    loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    doc: dict[str, Any] = yaml.load(FORMS_FILE.read_text(encoding="utf-8"), Loader=loader)
    return doc


def forms() -> list[dict[str, Any]]:
    return list(forms_document()["forms"])


def form(form_id: str) -> dict[str, Any] | None:
    return next((f for f in forms() if f["id"] == form_id), None)


@cache
def form_by_fact() -> dict[str, str]:
    """Catalogue fact id -> the id of the form that records it (the facts a card may ask the app for)."""
    return {fid: f["id"] for f in forms() for fid in f["facts"]}


def written_codes(f: dict[str, Any]) -> list[tuple[str, str]]:
    """(system, code) of every Observation.code the form can write."""
    local = str(forms_document()["local_system"])
    kind = f["kind"]
    if kind == "points":
        return [(local, f["total"]["code"])] + [(local, item["code"]) for item in f["items"]]
    if kind == "scale":
        return [(s["code"]["system"], s["code"]["code"]) for s in f["scales"]]
    if kind == "boolean":
        return [(local, item["code"]) for item in f["items"]]
    return [(local, f["code"]["code"])]
