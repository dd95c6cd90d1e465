"""Small, typed accessors over FHIR R4 JSON (already validated by the R4B models)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from .vocabulary import LOCAL_SYSTEM, codings

Resource = Mapping[str, Any]

INACTIVE_CLINICAL = {"inactive", "resolved", "remission"}
EXCLUDED_VERIFICATION = {"refuted", "entered-in-error"}
OBS_VALID_STATUS = {"final", "amended", "corrected", "preliminary"}


def ref(resource: Resource) -> str:
    return f"{resource.get('resourceType')}/{resource.get('id', '?')}"


def status_code(concept: Any) -> str | None:
    for c in codings(concept):
        code = c.get("code")
        if isinstance(code, str):
            return code
    return None


def condition_counts(cond: Resource) -> bool:
    """Active (or no status, legal in R4), not refuted or entered-in-error."""
    if status_code(cond.get("verificationStatus")) in EXCLUDED_VERIFICATION:
        return False
    clinical = status_code(cond.get("clinicalStatus"))
    return clinical not in INACTIVE_CLINICAL


def allergy_counts(allergy: Resource) -> bool:
    if status_code(allergy.get("verificationStatus")) in EXCLUDED_VERIFICATION:
        return False
    return status_code(allergy.get("clinicalStatus")) not in {"inactive", "resolved"}


def observation_counts(obs: Resource) -> bool:
    return obs.get("status") in OBS_VALID_STATUS


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or len(value) < 4:
        return None
    text = value.strip()
    try:
        if len(text) == 4:
            return datetime(int(text), 1, 1, tzinfo=UTC)
        if len(text) == 7:
            return datetime(int(text[:4]), int(text[5:7]), 1, tzinfo=UTC)
        if len(text) == 10:
            return datetime.fromisoformat(text).replace(tzinfo=UTC)
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def observation_time(obs: Resource) -> datetime | None:
    period = obs.get("effectivePeriod") or {}
    for value in (
        obs.get("effectiveDateTime"),
        obs.get("effectiveInstant"),
        period.get("end"),
        period.get("start"),
        obs.get("issued"),
    ):
        t = parse_time(value)
        if t:
            return t
    return None


def resource_time(res: Resource) -> datetime | None:
    rtype = res.get("resourceType")
    if rtype == "Observation":
        return observation_time(res)
    period = res.get("performedPeriod") or res.get("effectivePeriod") or {}
    for key in (
        "performedDateTime",
        "effectiveDateTime",
        "issued",
        "authoredOn",
        "dateAsserted",
        "recordedDate",
        "onsetDateTime",
        "started",
        "occurrenceDateTime",
    ):
        t = parse_time(res.get(key))
        if t:
            return t
    return parse_time(period.get("end")) or parse_time(period.get("start"))


def has_local_code(res: Resource, code: str) -> bool:
    return any(c.get("system") == LOCAL_SYSTEM and c.get("code") == code for c in codings(res.get("code")))


def numeric_value(obs: Resource) -> float | None:
    if isinstance(obs.get("valueInteger"), int) and not isinstance(obs.get("valueInteger"), bool):
        return finite_number(obs["valueInteger"])
    quantity = obs.get("valueQuantity")
    if isinstance(quantity, Mapping) and isinstance(quantity.get("value"), int | float):
        return finite_number(quantity["value"])
    return None


# No clinical value comes near this; it keeps sums (SINS, Tokuhashi) and unit scaling finite.
MAX_MAGNITUDE = 1e100


def finite_number(value: int | float) -> float | None:
    """A JSON number as a float; one no float can hold (10**400, found by hypothesis) is no value."""
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) and abs(number) <= MAX_MAGNITUDE else None


def boolean_value(obs: Resource) -> bool | None:
    value = obs.get("valueBoolean")
    return value if isinstance(value, bool) else None


def local_answer(obs: Resource) -> str | None:
    for c in codings(obs.get("valueCodeableConcept")):
        if c.get("system") == LOCAL_SYSTEM and isinstance(c.get("code"), str):
            return str(c["code"])
    return None


def body_sites(res: Resource) -> list[Any]:
    sites = res.get("bodySite")
    if isinstance(sites, list):
        return sites
    if isinstance(sites, Mapping):
        return [sites]
    return []


def medication_concepts(res: Resource) -> Iterable[Any]:
    concept = res.get("medicationCodeableConcept")
    if concept:
        yield concept
