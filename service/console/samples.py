"""Sample patients shipped with the console (``samples/index.json``; origins in ``samples/SOURCES.md``)."""

from __future__ import annotations

import json
import re
from datetime import date, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

SAMPLES_DIR = Path(__file__).resolve().parent / "samples"
_DATE = re.compile(r"^(\d{4}-\d{2}-\d{2})(T.*)?$")


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


def shift_dates(value: Any, days: int) -> Any:
    """Every FHIR date/dateTime string (``YYYY-MM-DD`` with optional time) moved by ``days``."""
    if isinstance(value, dict):
        return {k: shift_dates(v, days) for k, v in value.items()}
    if isinstance(value, list):
        return [shift_dates(v, days) for v in value]
    if isinstance(value, str):
        match = _DATE.match(value)
        if match:
            try:
                day = date.fromisoformat(match.group(1))
            except ValueError:
                return value
            return (day + timedelta(days=days)).isoformat() + (match.group(2) or "")
    return value
