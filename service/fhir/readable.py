"""The intake check: are the elements the fact extractor reads well-formed FHIR R4?

Full R4B model validation (``fhir.resources``) costs 130-600 µs per resource and was 62 % of a call
with 20,000 resources the rules read (docs/performance.md). The extractor reads a few dozen elements
(``code``, ``status``, the clinical/verification statuses, the ``value[x]``/``effective[x]``/
``onset[x]``/``performed[x]``/``medication[x]`` choices, dates, body sites, a RiskAssessment's
predictions, extension URLs, contained Medications); this module checks exactly those, against the R4
datatype rules (the regular expressions of the R4 specification, calendar-valid dates, 32-bit integers,
no two choices of one ``[x]`` element), in a few microseconds per resource. The common datatypes
(CodeableConcept, Quantity, Reference) are checked in one frame against the memos of values already found
well-formed, falling back to their definition for anything else; full dateTimes of day 01-28 without a leap
second are vouched for by a stricter pattern without the calendar check (``tests/test_readable.py`` checks
that both decide, and word each problem, exactly as the definitions).

The safety is the same kind as before: a resource whose read elements are not well-formed is never
read; the pool skips it and records why (``"<element path>: <problem>"``), and its category becomes
incomplete. Elements the extractor does not read are not checked (their content cannot reach a fact).
``spinecds validate`` still runs the full R4 checks (``service.conformance``) and the R4B model.

**Invariant:** when the extractor (``service/facts``) starts reading another element, add it to
``ELEMENTS`` (``tests/test_readable.py`` checks the table against every element the extractor reads
in the patient cases).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import date, datetime
from math import isfinite
from typing import Any

Check = Callable[[Any], str | None]  # value -> None, or the problem after the path (".coding[0]: code expected")

# R4 primitive datatypes (https://hl7.org/fhir/R4/datatypes.html), anchored
_YEAR = r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)"
_TIME = r"([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00))"
_MONTH_DAY = r"(0[1-9]|1[0-2])-(0[1-9]|[1-2][0-9]|3[0-1])"
DATE_RE = re.compile(rf"{_YEAR}(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1]))?)?")
DATETIME_RE = re.compile(rf"{_YEAR}(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1])(T{_TIME})?)?)?")
INSTANT_RE = re.compile(rf"{_YEAR}-{_MONTH_DAY}T{_TIME}")
ID_RE = re.compile(r"[A-Za-z0-9\-\.]{1,64}")
CODE_RE = re.compile(r"[^\s]+( [^\s]+)*")
URI_RE = re.compile(r"\S*")
STRING_RE = re.compile(r"[ \r\n\t\S]+")
INT32 = (-(2**31), 2**31 - 1)


# Values already found well-formed, per datatype: codes, systems, units and dates repeat across a chart's
# thousands of resources. Bounded: once full, new values are checked each time. Forgotten after each call's
# intake (``forget``): the memo holds strings of the request body, and a few thousand of them kept for good
# would pin the memory pages of the whole parsed body (31 MiB after a 17 MB body; service/memory_return.py).
MEMO_SIZE = 4096
_MEMOS: list[set[str]] = []
_MEMO_OF: dict[Check, set[str]] = {}  # a primitive's check -> its memo (problem() looks values up itself)


def forget() -> None:
    """Drop every memoised value (they belong to the body just read)."""
    for memo in _MEMOS:
        memo.clear()
    _PLANS.clear()
    _SHAPES.clear()
    _CHOICE_OF.clear()


def _pattern(
    kind: str,
    pattern: re.Pattern[str],
    calendar: bool = False,
    plain: re.Pattern[str] | None = None,
    remember: bool = True,
) -> tuple[Check, set[str]]:
    """The check of a primitive datatype, and its memo (the values found well-formed, for the inlined checks).

    ``plain``: a stricter pattern whose every match is well-formed without the calendar check (day 01-28, no
    second 60), tried first: a chart's dateTimes are all distinct, so their memo misses. ``remember=False``:
    values that do not repeat (ids) are not memoised.
    """
    good: set[str] = set()
    _MEMOS.append(good)
    limit = MEMO_SIZE if remember else 0

    expected, invalid = f": {kind} expected", f": invalid {kind}"

    def check(value: Any) -> str | None:
        if type(value) is not str:
            return expected
        if value in good or (plain is not None and plain.fullmatch(value)):
            return None
        if not pattern.fullmatch(value) or (calendar and not _calendar(value)):
            return invalid
        if len(good) < limit:
            good.add(value)
        return None

    if remember:
        _MEMO_OF[check] = good
    return check, good


def _calendar(text: str) -> bool:
    """A full date must exist (no 30 February); a time must be one datetime can hold (no second 60)."""
    if len(text) < 10:
        return True
    try:
        if len(text) == 10:
            date.fromisoformat(text)
        else:
            datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


# Full dates and times that need no calendar check: day 01-28 exists in every month, seconds stop at 59, and
# datetime.fromisoformat takes any zone the R4 pattern allows and 1-9 fraction digits (tests/test_readable.py).
# (Groups do not capture: faster. (?!0000)[0-9]{4} is the R4 year: 0001-9999.)
_PLAIN_DATE = r"(?!0000)[0-9]{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])"
_PLAIN_TIME = r"(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,9})?"
_PLAIN_ZONE = r"(?:Z|[+-](?:(?:0[0-9]|1[0-3]):[0-5][0-9]|14:00))"
PLAIN_DATETIME_RE = re.compile(rf"{_PLAIN_DATE}T{_PLAIN_TIME}{_PLAIN_ZONE}")

ID, _ = _pattern("id", ID_RE, remember=False)
CODE, _CODE_GOOD = _pattern("code", CODE_RE)
URI, _URI_GOOD = _pattern("uri", URI_RE)
STRING, _STRING_GOOD = _pattern("string", STRING_RE)
DATE, _ = _pattern("date", DATE_RE, calendar=True)
DATETIME, _ = _pattern("dateTime", DATETIME_RE, calendar=True, plain=PLAIN_DATETIME_RE)
INSTANT, _ = _pattern("instant", INSTANT_RE, calendar=True, plain=PLAIN_DATETIME_RE)


def BOOLEAN(value: Any) -> str | None:
    return None if type(value) is bool else ": boolean expected"


def INTEGER(value: Any) -> str | None:
    if type(value) is not int:
        return ": integer expected"
    return None if INT32[0] <= value <= INT32[1] else ": integer out of range"


def DECIMAL(value: Any) -> str | None:
    if type(value) is int or (type(value) is float and value == value and value not in (float("inf"), float("-inf"))):
        return None
    return ": decimal expected"


def _object(fields: Mapping[str, Check]) -> Check:
    """A complex datatype: a JSON object whose listed elements are checked (others are not read)."""

    def check(value: Any) -> str | None:
        if type(value) is not dict and not isinstance(value, Mapping):  # the type test first: much faster
            return ": object expected"
        for key, element in value.items():
            inner = fields.get(key)
            if inner is not None:
                problem = inner(element)
                if problem:
                    return f".{key}{problem}"
        return None

    return check


def _array(item: Check) -> Check:
    def check(value: Any) -> str | None:
        if type(value) is not list:
            return ": array expected"
        for i, element in enumerate(value):
            problem = item(element)
            if problem:
                return f"[{i}]{problem}"
        return None

    return check


# The common datatypes are checked by their definition (the ``_FULL_`` checks, which name the problem) only when
# the one-frame check below cannot vouch for the value: that one accepts a value whose strings are all in the
# memos (found well-formed before, by the same patterns) and whose other fields are well-formed; anything else,
# valid or not, goes to the full check. So both accept exactly the same values and every problem reads the same.
_FULL_CODING = _object({"system": URI, "version": STRING, "code": CODE, "display": STRING, "userSelected": BOOLEAN})
_FULL_CODEABLE_CONCEPT = _object({"coding": _array(_FULL_CODING), "text": STRING})
_FULL_QUANTITY = _object({"value": DECIMAL, "comparator": CODE, "unit": STRING, "system": URI, "code": CODE})
_FULL_REFERENCE = _object({"reference": STRING, "type": URI, "display": STRING})
# field -> the memo its value must be in, for the one-frame checks
_CONCEPT_MEMOS = {"text": _STRING_GOOD}
_CODING_MEMOS = {"system": _URI_GOOD, "code": _CODE_GOOD, "display": _STRING_GOOD, "version": _STRING_GOOD}
_QUANTITY_MEMOS = {"unit": _STRING_GOOD, "system": _URI_GOOD, "code": _CODE_GOOD, "comparator": _CODE_GOOD}
_REFERENCE_MEMOS = {"reference": _STRING_GOOD, "type": _URI_GOOD, "display": _STRING_GOOD}


def _seen(value: dict[str, Any], memos: Mapping[str, set[str]]) -> bool:
    """Every field of ``value`` that ``memos`` names is a string found well-formed before."""
    for key, element in value.items():
        memo = memos.get(key)
        if memo is not None and (type(element) is not str or element not in memo):
            return False
    return True


def CODEABLE_CONCEPT(value: Any) -> str | None:
    if type(value) is not dict or not _seen(value, _CONCEPT_MEMOS):
        return _FULL_CODEABLE_CONCEPT(value)
    codings = value.get("coding", [])
    if type(codings) is not list:
        return _FULL_CODEABLE_CONCEPT(value)
    for coding in codings:
        if type(coding) is not dict or not _seen(coding, _CODING_MEMOS):
            return _FULL_CODEABLE_CONCEPT(value)
        if "userSelected" in coding and type(coding["userSelected"]) is not bool:
            return _FULL_CODEABLE_CONCEPT(value)
    return None


def QUANTITY(value: Any) -> str | None:
    if type(value) is not dict or not _seen(value, _QUANTITY_MEMOS):
        return _FULL_QUANTITY(value)
    if "value" in value:
        number = value["value"]
        if type(number) is not int and (type(number) is not float or not isfinite(number)):
            return _FULL_QUANTITY(value)
    return None


def REFERENCE(value: Any) -> str | None:
    return None if type(value) is dict and _seen(value, _REFERENCE_MEMOS) else _FULL_REFERENCE(value)


PERIOD = _object({"start": DATETIME, "end": DATETIME})
RANGE = _object({"low": QUANTITY, "high": QUANTITY})
EXTENSION = _object({"url": URI})
PREDICTION = _object({"probabilityDecimal": DECIMAL, "whenRange": RANGE})
MEDICATION = _object({"resourceType": STRING, "id": ID, "code": CODEABLE_CONCEPT})


def _contained(value: Any) -> str | None:
    """Contained resources: a contained Medication (read through ``medicationReference: #id``) is checked."""
    if type(value) is not list:
        return ": array expected"
    for i, resource in enumerate(value):
        if not isinstance(resource, Mapping):
            return f"[{i}]: object expected"
        if resource.get("resourceType") == "Medication":
            problem = MEDICATION(resource)
            if problem:
                return f"[{i}]{problem}"
    return None


# Every element the fact extractor (service/facts) reads, for every type it reads.
ELEMENTS: dict[str, Check] = {
    "id": ID,
    "status": CODE,
    "code": CODEABLE_CONCEPT,
    "clinicalStatus": CODEABLE_CONCEPT,
    "verificationStatus": CODEABLE_CONCEPT,
    "severity": CODEABLE_CONCEPT,
    "method": CODEABLE_CONCEPT,
    "subject": REFERENCE,
    "patient": REFERENCE,
    "birthDate": DATE,
    "valueCodeableConcept": CODEABLE_CONCEPT,
    "valueQuantity": QUANTITY,
    "valueInteger": INTEGER,
    "valueBoolean": BOOLEAN,
    "effectiveDateTime": DATETIME,
    "effectiveInstant": INSTANT,
    "effectivePeriod": PERIOD,
    "issued": INSTANT,
    "performedDateTime": DATETIME,
    "performedPeriod": PERIOD,
    "onsetDateTime": DATETIME,
    "onsetPeriod": PERIOD,
    "recordedDate": DATETIME,
    "authoredOn": DATETIME,
    "dateAsserted": DATETIME,
    "started": DATETIME,
    "occurrenceDateTime": DATETIME,
    "procedureCode": _array(CODEABLE_CONCEPT),
    "conclusionCode": _array(CODEABLE_CONCEPT),
    "medicationCodeableConcept": CODEABLE_CONCEPT,
    "medicationReference": REFERENCE,
    "contained": _contained,
    "extension": _array(EXTENSION),
    "prediction": _array(PREDICTION),
}
# bodySite is one CodeableConcept on an Observation, an array of them elsewhere
BODY_SITE = {"Observation": CODEABLE_CONCEPT}
BODY_SITES = _array(CODEABLE_CONCEPT)
# choice elements the extractor reads: at most one of each ([x] in R4)
CHOICES = ("value", "effective", "onset", "performed", "medication", "occurrence")


def _choice_of(key: str) -> str | None:
    """The choice element a key spells (``valueQuantity`` -> ``value``), or None; memoised per key."""
    choice = _CHOICE_OF.get(key, _UNSEEN)
    if choice is _UNSEEN:
        choice = next((c for c in CHOICES if key.startswith(c) and len(key) > len(c) and key[len(c)].isupper()), None)
        if len(_CHOICE_OF) < MEMO_SIZE:
            _CHOICE_OF[key] = choice
    return choice  # type: ignore[return-value]


_UNSEEN = object()
_CHOICE_OF: dict[str, object] = {}


def _plan(key: str) -> Plan:
    """What to do with a top-level key: (the memo of its primitive datatype or None, its check or None, the
    choice element it spells or None), or ``()`` for a key the extractor does not read; the check is
    ``_BODY_SITE`` for bodySite, whose datatype depends on the resource type. Memoised per key (a chart repeats
    a few dozen keys)."""
    plan = _PLANS.get(key)
    if plan is None:
        check = _BODY_SITE if key == "bodySite" else ELEMENTS.get(key)
        choice = _choice_of(key)
        plan = (_MEMO_OF.get(check) if check is not None else None, check, choice) if check or choice else ()
        if len(_PLANS) < MEMO_SIZE:
            _PLANS[key] = plan
    return plan


def _BODY_SITE(value: Any) -> str | None:  # a marker: problem() picks the check by resource type
    raise AssertionError("bodySite is checked with BODY_SITE / BODY_SITES")


Plan = tuple[set[str] | None, Check | None, str | None] | tuple[()]
_PLANS: dict[str, Plan] = {}


def problem(rtype: str, resource: Mapping[str, Any]) -> str | None:
    """Why the extractor cannot read this resource safely ("<path>: <problem>"), or None."""
    if type(resource) is dict:  # a chart repeats a few key sequences: their read elements are listed once
        keys = tuple(resource)
        try:
            steps = _SHAPES[keys]
        except KeyError:  # a new key sequence; once the memo is full (a hostile body), read key by key
            steps = _steps(keys) if len(_SHAPES) < MEMO_SIZE else None
        if steps is not None:
            for key, memo, check in steps:
                value = resource[key]
                if memo is None or type(value) is not str or value not in memo:
                    found = check(value)
                    if found:
                        return f"{key}{found}"
            return None
    return _problem_by_key(rtype, resource)


Step = tuple[str, set[str] | None, Check]
_SHAPES: dict[tuple[str, ...], tuple[Step, ...] | None] = {}


def _steps(keys: tuple[str, ...]) -> tuple[Step, ...] | None:
    """The read elements of a key sequence, in order, with their memo and check; None (read key by key) when
    the keys hold two choices of one element (that problem is worded where it is met) or a bodySite (its check
    depends on the resource type). Memoised per key sequence (problem() asks only while the memo has room)."""
    plans = [_plan(key) for key in keys]
    choices = [plan[2] for plan in plans if plan and plan[2] is not None]
    steps: tuple[Step, ...] | None = None
    if len(set(choices)) == len(choices) and "bodySite" not in keys:
        steps = tuple((key, plan[0], plan[1]) for key, plan in zip(keys, plans, strict=True) if plan and plan[1])
    _SHAPES[keys] = steps
    return steps


def _problem_by_key(rtype: str, resource: Mapping[str, Any]) -> str | None:
    first: str | None = None  # the first choice element met; the others, if any, in ``more``
    more: set[str] | None = None
    plans = _PLANS
    for key, value in resource.items():
        plan = plans.get(key)
        if plan is None:
            plan = _plan(key)
        if not plan:
            continue
        memo, check, choice = plan
        if check is not None and (memo is None or type(value) is not str or value not in memo):
            if check is _BODY_SITE:
                check = BODY_SITE.get(rtype, BODY_SITES)
            found = check(value)
            if found:
                return f"{key}{found}"
        if choice is not None:
            if first is None:
                first = choice
            elif choice == first or (more is not None and choice in more):
                return f"{choice}[x]: more than one choice"
            elif more is None:
                more = {choice}
            else:
                more.add(choice)
    return None
