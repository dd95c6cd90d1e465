"""Sample patients shipped with the console (``samples/index.json``; origins in ``samples/SOURCES.md``)."""

from __future__ import annotations

import json
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from service.fhir.date_shift import shift_dates

SAMPLES_DIR = Path(__file__).resolve().parent / "samples"


@cache
def sample_index() -> list[dict[str, Any]]:
    data = json.loads((SAMPLES_DIR / "index.json").read_text(encoding="utf-8"))
    return list(data["samples"])


def sample_entry(sample_id: str) -> dict[str, Any] | None:
    return next((s for s in sample_index() if s["id"] == sample_id), None)


def load_sample(entry: dict[str, Any], now: datetime) -> Any:
    """The sample's data with every date moved so that its reference instant falls on ``now``'s day."""
    data = json.loads((SAMPLES_DIR / entry["file"]).read_text(encoding="utf-8"))
    reference = entry.get("referenceInstant")
    if not reference:
        return data
    days = (now.date() - datetime.fromisoformat(reference.replace("Z", "+00:00")).date()).days
    return shift_dates(data, days) if days else data
