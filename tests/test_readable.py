"""The intake's read-element check (service/fhir/readable.py) keeps the full model's safety for what is read.

* every element the fact extractor reads, in every patient case, is in the check's table;
* every resource of the patient cases that the full R4B model accepts is accepted (no new refusals);
* a malformed value in a read element is refused with its path; a value in an element no rule reads is not;
* property: a patient-case resource with any JSON value spliced in anywhere is either refused by the
  intake or read by the extractor without an error.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import pytest
from conftest import CASE_NOW, ROOT
from hypothesis import HealthCheck, given, settings

from service.cds.definitions import CATEGORIES
from service.engine.ruleset import load_rulebase
from service.facts.extract import ExtractionInput, catalogue_fact_ids, extract_facts
from service.facts.vocabulary import Vocabulary
from service.fhir import readable
from service.fhir.pool import RULE_TYPES, ResourcePool, r4b_problem

VOCAB = Vocabulary.load(ROOT / "fhir_profiles")
BASE = load_rulebase(str(ROOT / "rules"), {})
THRESHOLDS = {k: float(v["value"]) for k, v in BASE.thresholds.items()}
CASE_FILES = sorted((ROOT / "tests" / "cases").glob("*.json")) + sorted(
    (ROOT / "tests" / "cases-standard").glob("*.json")
)


def _case(path: Path) -> dict[str, Any]:
    case: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return case


CASES = [c for c in (_case(p) for p in CASE_FILES) if isinstance(c.get("resources"), list)]
CASE_RESOURCES = [r for c in CASES for r in c["resources"] if r.get("resourceType") in RULE_TYPES]


class Recording(dict[str, Any]):
    """A resource that remembers which of its elements were read."""

    read: set[tuple[str, str]] = set()

    def _note(self, key: object) -> None:
        Recording.read.add((str(self.get_raw("resourceType")), str(key)))

    def get_raw(self, key: str) -> Any:
        return super().get(key)

    def get(self, key: str, default: Any = None) -> Any:
        self._note(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> Any:
        self._note(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        self._note(key)
        return super().__contains__(key)


def _facts(resources: Sequence[dict[str, Any]], drafts: Sequence[dict[str, Any]] | None = None) -> Any:
    by_type: dict[str, list[dict[str, Any]]] = {}
    for r in resources:
        by_type.setdefault(r["resourceType"], []).append(r)
    inp = ExtractionInput(
        VOCAB, by_type, frozenset(CATEGORIES), THRESHOLDS, CASE_NOW, list(drafts or []), facts=BASE.facts
    )
    return extract_facts(inp)


def test_every_element_the_extractor_reads_is_checked() -> None:
    Recording.read = set()
    for case in CASES:
        resources = [Recording(r) for r in case["resources"] if r.get("resourceType") in RULE_TYPES]
        drafts = [Recording(o) for o in case.get("draft_orders", [])]
        _facts(resources, drafts)
    assert Recording.read, "the recording saw nothing"
    checked = set(readable.ELEMENTS) | {"bodySite", "resourceType"}
    unchecked = sorted(f"{rtype}.{key}" for rtype, key in Recording.read if key not in checked)
    assert unchecked == [], f"the extractor reads elements the intake does not check: {unchecked}"


def test_every_case_resource_the_full_model_accepts_is_accepted() -> None:
    assert len(CASE_RESOURCES) > 500
    refused = [
        (f"{r['resourceType']}/{r.get('id')}", readable.problem(r["resourceType"], r))
        for r in CASE_RESOURCES
        if r4b_problem(r) is None and readable.problem(r["resourceType"], r) is not None
    ]
    assert refused == []


def test_case_resources_the_full_model_refuses_for_a_read_element_are_refused() -> None:
    """The cases' deliberately unreadable resources (bad dates) are refused by both."""
    bad = [r for c in CASES for r in c.get("unreadable_resources", [])] + [
        r for r in CASE_RESOURCES if r4b_problem(r) is not None
    ]
    assert bad, "the cases hold unreadable resources"
    assert all(readable.problem(r["resourceType"], r) is not None for r in bad)


TERMINOLOGY = "http://terminology.hl7.org/CodeSystem"
OBS: dict[str, Any] = {
    "resourceType": "Observation",
    "id": "o1",
    "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "777-3"}]},
    "subject": {"reference": "Patient/p"},
    "effectiveDateTime": "2026-05-01T10:00:00Z",
    "valueQuantity": {"value": 120, "unit": "10*3/uL", "system": "http://unitsofmeasure.org", "code": "10*3/uL"},
}
COND: dict[str, Any] = {
    "resourceType": "Condition",
    "id": "c1",
    "clinicalStatus": {
        "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]
    },
    "code": {"coding": [{"system": "http://snomed.info/sct", "code": "94222008"}]},
    "bodySite": [{"coding": [{"system": "http://snomed.info/sct", "code": "122496007"}]}],
    "subject": {"reference": "Patient/p"},
    "onsetDateTime": "2026-03",
}
MALFORMED = [
    (OBS, {"status": ["final"]}, "status: code expected"),
    (OBS, {"status": "fin al  x"}, "status: invalid code"),
    (OBS, {"code": [{"coding": []}]}, "code: object expected"),
    (OBS, {"code": {"coding": {"system": "http://loinc.org"}}}, "code.coding: array expected"),
    (OBS, {"code": {"coding": [{"system": "http://loinc.org", "code": 777}]}}, "code.coding[0].code: code expected"),
    (OBS, {"code": {"coding": [{"system": "http://lo inc.org", "code": "1"}]}}, "code.coding[0].system: invalid uri"),
    (OBS, {"effectiveDateTime": "2026-02-30T10:00:00Z"}, "effectiveDateTime: invalid dateTime"),
    (OBS, {"effectiveDateTime": "2026-05-01T10:00:00"}, "effectiveDateTime: invalid dateTime"),  # no zone
    (OBS, {"effectiveDateTime": "yesterday"}, "effectiveDateTime: invalid dateTime"),
    (OBS, {"effectivePeriod": ["2026"]}, "effectivePeriod: object expected"),
    (OBS, {"effectivePeriod": {"end": 2026}}, "effectivePeriod.end: dateTime expected"),
    (OBS, {"issued": "2026-05-01"}, "issued: invalid instant"),
    (OBS, {"valueQuantity": {"value": "120"}}, "valueQuantity.value: decimal expected"),
    (OBS, {"valueQuantity": {"value": True}}, "valueQuantity.value: decimal expected"),
    (OBS, {"valueQuantity": {"value": 1, "unit": ["x"]}}, "valueQuantity.unit: string expected"),
    (OBS, {"valueInteger": 2**31}, "valueInteger: integer out of range"),
    (OBS, {"valueInteger": 1.5}, "valueInteger: integer expected"),
    (OBS, {"valueBoolean": "true"}, "valueBoolean: boolean expected"),
    (OBS, {"valueString": "high"}, "value[x]: more than one choice"),
    (OBS, {"effectivePeriod": {"start": "2026"}}, "effective[x]: more than one choice"),
    (OBS, {"bodySite": [{"text": "T12"}]}, "bodySite: object expected"),  # one CodeableConcept on Observation
    (OBS, {"id": "a/b"}, "id: invalid id"),
    (OBS, {"subject": "Patient/p"}, "subject: object expected"),
    (COND, {"onsetDateTime": "2026-05-32"}, "onsetDateTime: invalid dateTime"),
    (COND, {"bodySite": {"text": "spine"}}, "bodySite: array expected"),
    (COND, {"clinicalStatus": {"coding": [{"code": ""}]}}, "clinicalStatus.coding[0].code: invalid code"),
    (COND, {"recordedDate": "2026-1-1"}, "recordedDate: invalid dateTime"),
    (COND, {"extension": [{"url": None}]}, "extension[0].url: uri expected"),
    ({"resourceType": "Patient", "id": "p"}, {"birthDate": "1960-02-30"}, "birthDate: invalid date"),
    (
        {"resourceType": "RiskAssessment", "id": "r", "status": "final"},
        {"prediction": [{"probabilityDecimal": 0.2, "whenRange": {"high": {"value": "90"}}}]},
        "prediction[0].whenRange.high.value: decimal expected",
    ),
    (
        {
            "resourceType": "MedicationRequest",
            "id": "m",
            "status": "active",
            "medicationReference": {"reference": "#x"},
        },
        {"contained": [{"resourceType": "Medication", "id": "x", "code": {"coding": "rx"}}]},
        "contained[0].code.coding: array expected",
    ),
    (
        {"resourceType": "ImagingStudy", "id": "i", "status": "available"},
        {"procedureCode": [{"coding": [{"code": 5}]}]},
        "procedureCode[0].coding[0].code: code expected",
    ),
]


@pytest.mark.parametrize(("base", "patch", "reason"), MALFORMED, ids=[m[2] for m in MALFORMED])
def test_a_malformed_read_element_is_refused_with_its_path(
    base: dict[str, Any], patch: dict[str, Any], reason: str
) -> None:
    assert readable.problem(base["resourceType"], base) is None
    resource = {**base, **patch}
    assert readable.problem(resource["resourceType"], resource) == reason
    pool = ResourcePool()
    pool.add_payload(resource, "test")
    assert pool.by_type == {}
    assert [s.reason for s in pool.skipped] == [f"{resource['resourceType']} failed R4 validation: {reason}"]


def test_elements_no_rule_reads_are_not_checked() -> None:
    """Content that cannot reach a fact does not cost its validation (the full model would refuse this)."""
    resource = {**OBS, "note": [{"text": 5}], "category": "laboratory"}
    assert r4b_problem(resource) is not None
    assert readable.problem("Observation", resource) is None


def test_valid_fhir_forms_are_accepted() -> None:
    for value in ("2026", "2026-05", "2026-05-01", "2026-05-01T10:00:00.123456789+14:00", "2026-05-01T23:59:59-05:00"):
        assert readable.problem("Observation", {**OBS, "effectiveDateTime": value}) is None, value
    assert readable.problem("Observation", {**OBS, "valueQuantity": {"value": 10**30}}) is None  # a decimal
    assert readable.problem("Condition", {**COND, "onsetPeriod": {"start": "2026"}, "onsetDateTime": None}) is not None


# ----------------------------------------------------------------------------- property

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)
CHARTS = [[r for r in c["resources"] if r.get("resourceType") in RULE_TYPES] for c in CASES]
CHARTS = [chart for chart in CHARTS if chart]


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


def _splice(resource: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(resource)
    target: Any = out
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_value_anywhere_is_refused_or_read_without_error(data: st.DataObject) -> None:
    chart = data.draw(st.sampled_from(CHARTS))
    index = data.draw(st.integers(0, len(chart) - 1))
    resource = chart[index]
    if data.draw(st.booleans()):  # a read element, present or not
        path: tuple[Any, ...] = (data.draw(st.sampled_from(sorted(readable.ELEMENTS) + ["bodySite"])),)
    else:  # anywhere inside the resource
        path = data.draw(st.sampled_from([p for p in _paths(resource) if p[0] != "resourceType"]))
    spliced = _splice(resource, path, data.draw(json_values))
    pool = ResourcePool()
    pool.add_payload(spliced, "test")
    if not pool.by_type:
        return  # refused: never read
    facts = _facts([*chart[:index], spliced, *chart[index + 1 :]])
    assert {f.fid for f in facts} == set(catalogue_fact_ids())
    json.dumps([f.trace() for f in facts], allow_nan=False)


HOSTILE = [
    [],
    [1],
    ["x"],
    "x",
    1,
    1.5,
    True,
    {"a": 1},
    {"coding": "x"},
    {"coding": [1]},
    {"coding": [{"system": 5, "code": ["x"]}]},
    {"coding": [{"system": "http://snomed.info/sct", "code": {"x": 1}}]},
    {"start": 5, "end": ["2026"]},
    {"value": "1", "unit": 5, "code": []},
    {"high": "x", "low": 1},
    {"reference": 5},
    [{"high": 5}],
    [{"url": 5}],
    [{"coding": [{"system": 5}]}],
    [{"probabilityDecimal": "0.5", "whenRange": "x"}],
    [{"resourceType": "Medication", "id": 5, "code": "x"}],
]
ONE_CHART_PER_TYPE = {
    rtype: next((c for c in CHARTS if any(r["resourceType"] == rtype for r in c)), None) for rtype in RULE_TYPES
}


@pytest.mark.parametrize("rtype", sorted(t for t, chart in ONE_CHART_PER_TYPE.items() if chart))
def test_hostile_values_in_read_elements_are_refused_or_read_without_error(rtype: str) -> None:
    chart = ONE_CHART_PER_TYPE[rtype]
    assert chart is not None
    index = next(i for i, r in enumerate(chart) if r["resourceType"] == rtype)
    accepted = 0
    for element in [*sorted(readable.ELEMENTS), "bodySite"]:
        for value in HOSTILE:
            spliced = {**chart[index], element: value}
            if readable.problem(rtype, spliced) is not None:
                continue
            accepted += 1
            facts = _facts([*chart[:index], spliced, *chart[index + 1 :]])
            assert {f.fid for f in facts} == set(catalogue_fact_ids()), (element, value)
    assert accepted < len(HOSTILE) * 10, "most hostile values are refused"


def test_a_reference_is_resolved_again_when_a_later_page_brings_new_full_urls() -> None:
    """The pool remembers which reference strings point at the patient; a fullUrl learnt later can change that."""
    pool = ResourcePool(patient_id="A")
    cond = {"resourceType": "Condition", "id": "c1", "subject": {"reference": "urn:uuid:x-1"}}
    assert pool.add_payload({**cond, "subject": {"reference": "Patient/A"}}, "first").accepted == 1
    assert pool.add_payload(cond, "second").other_patient == 1  # urn:uuid:x-1 resolves to nothing yet
    page = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [
            {"fullUrl": "urn:uuid:x-1", "resource": {"resourceType": "Patient", "id": "A"}},
            {"resource": {**cond, "id": "c2"}},
        ],
    }
    assert pool.add_payload(page, "third").other_patient == 0
    assert [c["id"] for c in pool.of("Condition")] == ["c1", "c2"]


# ----------------------------------------------------------------------------- the fast paths decide as the definition


def _defined_datetime(value: str) -> bool:
    """R4 dateTime by its definition: the specification's pattern, and a calendar-valid date and time."""
    return bool(readable.DATETIME_RE.fullmatch(value)) and readable._calendar(value)


DATETIME_SHAPES = [
    f"{year}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}{fraction}{zone}"
    for year in ("2024", "2023", "1900", "2000", "0001", "9999", "0000", "20245")
    for month in (1, 2, 4, 12, 13)
    for day in (0, 1, 9, 10, 19, 20, 28, 29, 30, 31, 32)
    for hour, minute, second in ((0, 0, 0), (23, 59, 59), (23, 59, 60), (24, 0, 0), (10, 60, 0))
    for fraction in ("", ".5", ".123456789", ".1234567890123", ".")
    for zone in ("Z", "+14:00", "-14:00", "+14:01", "+13:59", "-00:00", "", "z", "+1400")
]


def test_the_plain_datetime_pattern_accepts_only_calendar_valid_values() -> None:
    """A dateTime the plain pattern vouches for (no calendar check) is valid by the definition, and the check
    decides every shape as the definition does, whether or not it was memoised."""
    plain = [v for v in DATETIME_SHAPES if readable.PLAIN_DATETIME_RE.fullmatch(v)]
    assert len(plain) > 1000
    assert [v for v in plain if not _defined_datetime(v)] == []
    for memo in ("cold", "warm"):
        if memo == "cold":
            readable.forget()
        decided = {v: readable.DATETIME(v) is None for v in DATETIME_SHAPES}
        assert decided == {v: _defined_datetime(v) for v in DATETIME_SHAPES}, memo
        assert {v: readable.INSTANT(v) is None for v in DATETIME_SHAPES} == {
            v: bool(readable.INSTANT_RE.fullmatch(v)) and readable._calendar(v) for v in DATETIME_SHAPES
        }
    assert readable.DATETIME("2024-02-29T10:00:00Z") is None and readable.DATETIME("2023-02-29T10:00:00Z")


FIELD_VALUES: list[Any] = [
    None, True, 0, 5, 1.5, float("nan"), float("inf"), 10**30, "", " ", "a", "a b", "a  b", " a", "a\tb", "\u00a0",
    "http://loinc.org", "777-3", "Patient/p", [], ["a"], {}, {"a": "b"},
]  # fmt: skip
ONE_FRAME = {  # the checks done in one frame, and the elements each reads
    "CODEABLE_CONCEPT": (readable.CODEABLE_CONCEPT, readable._FULL_CODEABLE_CONCEPT),
    "QUANTITY": (readable.QUANTITY, readable._FULL_QUANTITY),
    "REFERENCE": (readable.REFERENCE, readable._FULL_REFERENCE),
}
CODING_FIELDS = ["system", "version", "code", "display", "userSelected", "extension"]


def _shapes(name: str) -> list[Any]:
    """Every field of the datatype (and of a Coding inside a CodeableConcept) holding every value, and odd shapes."""
    out: list[Any] = [v for v in FIELD_VALUES]
    if name == "CODEABLE_CONCEPT":
        out += [{"text": v} for v in FIELD_VALUES] + [{"coding": v} for v in FIELD_VALUES]
        out += [{"coding": [v]} for v in FIELD_VALUES]
        out += [{"coding": [{"system": "http://loinc.org"}, {f: v}]} for f in CODING_FIELDS for v in FIELD_VALUES]
    elif name == "QUANTITY":
        fields = ["value", "comparator", "unit", "system", "code", "extension"]
        out += [{"value": 1, f: v} for f in fields for v in FIELD_VALUES]
    else:
        out += [{f: v} for f in ("reference", "type", "display", "identifier") for v in FIELD_VALUES]
    return out


@pytest.mark.parametrize("name", sorted(ONE_FRAME))
def test_the_one_frame_checks_decide_and_word_as_the_definition(name: str) -> None:
    """Whatever the memos hold (cold, or warmed with every string that is well-formed as any datatype), the
    one-frame check of a common datatype gives exactly what its definition gives, problem text included."""
    fast, full = ONE_FRAME[name]
    shapes = _shapes(name)
    readable.forget()
    cold = [fast(v) for v in shapes]
    assert cold == [full(v) for v in shapes]
    for check in (readable.URI, readable.CODE, readable.STRING):
        for value in FIELD_VALUES:
            check(value)  # memoise each value that is well-formed as a uri, a code or a string
    warm = [fast(v) for v in shapes]
    assert warm == [full(v) for v in shapes] == cold
    assert any(cold) and not all(cold)


def _variants() -> list[dict[str, Any]]:
    """Every case resource, and each with every hostile value in every read element."""
    out = list(CASE_RESOURCES)
    for rtype, chart in ONE_CHART_PER_TYPE.items():
        resource = next(r for r in chart or [] if r["resourceType"] == rtype) if chart else None
        for element in [*sorted(readable.ELEMENTS), "bodySite", "valueString", "effectivePeriod"]:
            for value in HOSTILE if resource else []:
                out.append({**resource, element: value})  # type: ignore[dict-item]
    return out


def test_the_key_sequence_path_decides_and_words_as_reading_key_by_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """problem() lists the read elements of each key sequence once; it gives what reading every key gives, with
    the memos cold or warm, and when its memo of key sequences is full (then it reads key by key)."""
    variants = _variants()
    assert len(variants) > 5000
    readable.forget()
    by_key = [readable._problem_by_key(r["resourceType"], r) for r in variants]
    assert any(by_key) and not all(by_key)
    readable.forget()
    assert [readable.problem(r["resourceType"], r) for r in variants] == by_key  # cold, then warm as it goes
    assert [readable.problem(r["resourceType"], r) for r in variants] == by_key  # every sequence known
    readable.forget()
    monkeypatch.setattr(readable, "MEMO_SIZE", 3)
    assert [readable.problem(r["resourceType"], r) for r in variants] == by_key
    assert len(readable._SHAPES) == 3
