"""Small, typed accessors over FHIR R4 JSON (already validated by the R4B models)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from functools import lru_cache
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
    t = parse_time(obs.get("effectiveDateTime"))  # almost always the one (a chart sorts thousands)
    if t:
        return t
    period = obs.get("effectivePeriod") or {}
    for value in (obs.get("effectiveInstant"), period.get("end"), period.get("start"), obs.get("issued")):
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
    integer = obs.get("valueInteger")
    if integer is not None and isinstance(integer, int) and not isinstance(integer, bool):
        return finite_number(integer)
    quantity = obs.get("valueQuantity")
    if type(quantity) is dict or isinstance(quantity, Mapping):
        number = quantity.get("value")
        if isinstance(number, (int, float)):
            return finite_number(number)
    return None


# No clinical value comes near this; it keeps sums (SINS, Tokuhashi) and unit scaling finite.
MAX_MAGNITUDE = 1e100


def finite_number(value: int | float) -> float | None:
    """A JSON number as a float; one no float can hold (10**400, found by hypothesis) is no value."""
    try:
        number = value if type(value) is float else float(value)
    except OverflowError:
        return None
    return number if -MAX_MAGNITUDE <= number <= MAX_MAGNITUDE else None  # false for nan and inf too


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


def medication_concepts(res: Resource, medications: Mapping[str, Resource]) -> list[Any] | None:
    """The drug codes of a MedicationRequest/MedicationStatement: ``medicationCodeableConcept``, or the
    ``code`` of the Medication that ``medicationReference`` points to (contained ``#id``, or ``Medication/id``
    / an absolute URL ending so, looked up in ``medications`` by id). None when the reference cannot be
    resolved: the order's drug is then unknown, not absent.
    """
    concept = res.get("medicationCodeableConcept")
    if concept:
        return [concept]
    reference = res.get("medicationReference")
    if reference is None:
        return []
    target = reference.get("reference") if isinstance(reference, Mapping) else None
    if not isinstance(target, str):
        return None  # a reference by identifier or display only: the drug cannot be read
    medication: Resource | None = None
    if target.startswith("#"):
        medication = next(
            (
                c
                for c in res.get("contained") or []
                if isinstance(c, Mapping) and c.get("resourceType") == "Medication" and c.get("id") == target[1:]
            ),
            None,
        )
    else:
        parts = target.rstrip("/").split("/")
        if len(parts) >= 2 and parts[-2] == "Medication":
            medication = medications.get(parts[-1])
        elif len(parts) >= 4 and parts[-4] == "Medication" and parts[-2] == "_history":
            medication = medications.get(parts[-3])
    if medication is None or not medication.get("code"):
        return None
    return [medication["code"]]


def medications_by_id(resources: Iterable[Resource]) -> dict[str, Resource]:
    return {str(m["id"]): m for m in resources if isinstance(m, Mapping) and m.get("id")}


# ----------------------------------------------------------------------------- units (docs/terminology.md)

UCUM = "http://unitsofmeasure.org"

# A measured value is compared in its threshold's unit. Each table maps the unit spellings labs send
# (UCUM codes first, then the common non-UCUM report units: K/uL, x10E3/uL, Gpt/L …) to the factor that
# converts a value into the target unit. Keys are normalised by unit_key(). A unit not listed makes the
# value unusable (the fact is unknown with a note), never guessed.
COUNT_PER_VOLUME_1E9_PER_L: dict[str, float] = {
    # 10^9 per litre
    "10*9/l": 1.0,
    "gpt/l": 1.0,
    "/nl": 1.0,
    "10*6/ml": 1.0,
    # 10^3 per microlitre (= 10^9/L)
    "10*3/ul": 1.0,
    "10*3/mm3": 1.0,
    "k/ul": 1.0,
    "k/mm3": 1.0,
    "thou/ul": 1.0,
    "10*3{cells}/ul": 1.0,
    # per microlitre / cubic millimetre (÷ 1000)
    "/ul": 1e-3,
    "/mm3": 1e-3,
    "{cells}/ul": 1e-3,
    "cells/ul": 1e-3,
    "{cells}/mm3": 1e-3,
    # per litre
    "/l": 1e-9,
    "10*12/l": 1e3,
}
RATIO_UNITS: dict[str, float] = {"": 1.0, "1": 1.0, "{inr}": 1.0, "inr": 1.0, "{ratio}": 1.0, "ratio": 1.0}
TIME_IN_MONTHS: dict[str, float] = {
    "mo": 1.0,
    "month": 1.0,
    "months": 1.0,
    "mon": 1.0,
    "mos": 1.0,
    "a": 12.0,
    "year": 12.0,
    "years": 12.0,
    "yr": 12.0,
    "yrs": 12.0,
    "y": 12.0,
    "wk": 1 / 4.345,
    "week": 1 / 4.345,
    "weeks": 1 / 4.345,
    "w": 1 / 4.345,
    "d": 1 / 30.44,
    "day": 1 / 30.44,
    "days": 1 / 30.44,
}
TIME_IN_DAYS: dict[str, float] = {unit: months * 30.44 for unit, months in TIME_IN_MONTHS.items()}
UNIT_TABLES: dict[str, Mapping[str, float]] = {
    "10*9/L": COUNT_PER_VOLUME_1E9_PER_L,
    "{INR}": RATIO_UNITS,
    "mo": TIME_IN_MONTHS,
    "d": TIME_IN_DAYS,  # a prediction's horizon (RiskAssessment whenRange)
}
UNIT_REQUIRED = {"10*9/L": True, "{INR}": False, "mo": True, "d": False}
# the unit each lab ValueSet's values are compared in (facts/extract.py coagulation, offline/coverage.py)
UNIT_FOR_VALUESET = {"lab-platelets": "10*9/L", "lab-inr": "{INR}"}


@lru_cache(maxsize=128)  # a chart spells a handful of units thousands of times
def unit_key(unit: str) -> str:
    """Case, spaces, ^/E exponents and the micro sign folded: "x10^3/µL" -> "x10*3/ul"."""
    key = unit.strip().lower().replace(" ", "").replace("µ", "u").replace("μ", "u").replace("^", "*")
    key = key.replace("10e", "10*")
    return key.removeprefix("x") if key.startswith("x10*") else key


class UnitProblem(ValueError):
    """A value that cannot be compared: its unit is missing where one is required, or not recognised."""


def quantity_in(obs: Resource, target: str) -> float | None:
    """The numeric value converted into ``target`` (a key of UNIT_TABLES); None when there is no value.

    Raises UnitProblem when the value carries no unit though one is required, or a unit not recognised.
    The UCUM code is read first, then the unit text.
    """
    value = numeric_value(obs)
    if value is None:
        return None
    quantity = obs.get("valueQuantity")
    if type(quantity) is dict or isinstance(quantity, Mapping):
        code, unit = quantity.get("code"), quantity.get("unit")
        code, unit = code if isinstance(code, str) else "", unit if isinstance(unit, str) else ""
        # the memo keeps no long text of a request (a unit is a few characters)
        read = _unit_factor if len(code) + len(unit) <= 64 else _unit_factor.__wrapped__
        factor = read(target, code, unit)
    else:
        factor = _unit_factor(target, "", "")
    if isinstance(factor, str):
        raise UnitProblem(factor)
    return value if factor is None or factor == 1.0 else finite_number(value * factor)  # value is finite


@lru_cache(maxsize=128)  # a chart spells a handful of units thousands of times
def _unit_factor(target: str, code: str, unit: str) -> float | str | None:
    """The factor into ``target`` of a value spelled with this UCUM code and unit text (read in that order;
    "" when absent): None for a value without a unit that needs none, a str (the problem) for a unit that
    cannot be read."""
    spelled = [text.strip() for text in (code, unit) if text.strip()]
    if not spelled:
        return "no unit given" if UNIT_REQUIRED[target] else None
    table = UNIT_TABLES[target]
    for text in spelled:
        factor = table.get(unit_key(text))
        if factor is not None:
            return factor
    return f"unit {spelled[0]!r} not recognised"
