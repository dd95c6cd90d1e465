"""Moving a record in time: every FHIR date/dateTime moved by whole days, so data written against one instant
(the patient cases' 2026-06-01) keep their "within 7 days" on any later clock (the console's samples, the bench)."""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Any

# a full FHIR date, optionally with a time of day and zone (partial dates such as "2026-06" are left alone)
_DATE = re.compile(r"^(\d{4}-\d{2}-\d{2})(T[0-9:.]+(?:Z|[+-]\d{2}:\d{2})?)?$")


def shift_dates(value: Any, days: int) -> Any:
    """A copy of ``value`` with every full date (``YYYY-MM-DD``, with optional time) moved by ``days``.

    The time of day and the zone are kept; partial dates, other strings and impossible dates are unchanged.
    """
    if isinstance(value, dict):
        return {k: shift_dates(v, days) for k, v in value.items()}
    if isinstance(value, list):
        return [shift_dates(v, days) for v in value]
    if isinstance(value, str) and days:
        match = _DATE.match(value)
        if match:
            try:
                day = date.fromisoformat(match.group(1))
            except ValueError:
                return value
            return (day + timedelta(days=days)).isoformat() + (match.group(2) or "")
    return value
