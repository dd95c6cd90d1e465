"""Property tests: the fact extractor never crashes on any well-shaped FHIR R4 data.

Resources of every type the rules read are generated with codes from our ValueSets and the local
CodeSystem (so the matching paths run) mixed with arbitrary codes, full and partial dates ("2024",
"2024-03"), arbitrary values, units, body sites and statuses. For any of them:

* ``extract_facts`` does not raise, and yields every catalogue fact, each known with a scalar value
  or unknown (never a silent gap);
* the same resources sent as a CDS Hooks call through the real app never produce a 5xx, and a 200
  is a valid cards response.
"""

from __future__ import annotations

import json
import string
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import pytest
from conftest import CASE_NOW, ROOT
from hypothesis import HealthCheck, given, settings
from support.cds_checker import check_cards_response, errors_only

from service.cds.definitions import CATEGORIES
from service.cds.request_builder import SERVICE_FOR_HOOK, build_request
from service.engine.ruleset import load_rulebase
from service.facts.extract import ExtractionInput, catalogue_fact_ids, extract_facts
from service.facts.vocabulary import LOCAL_SYSTEM, Vocabulary

VOCAB = Vocabulary.load(ROOT / "fhir_profiles")
BASE = load_rulebase(str(ROOT / "rules"), {})
THRESHOLDS = {k: float(v["value"]) for k, v in BASE.thresholds.items()}
LOCAL_CODES = [
    c["code"] for c in json.loads((ROOT / "fhir_profiles" / "CodeSystem-spinecds-local.json").read_text())["concept"]
]


def _vocabulary_codings() -> list[tuple[str, str]]:
    out: set[tuple[str, str]] = set()
    for vs_id in VOCAB.ids:
        vs = VOCAB.valueset(vs_id)
        out |= vs.codes
        for system, prefixes in vs.prefixes.items():
            for prefix in prefixes:  # a child code under an is-a prefix (ICD-10-CM, ATC)
                out |= {(system, prefix), (system, prefix[:3] + "." + prefix[3:] + "1")}
    out |= {(LOCAL_SYSTEM, c) for c in LOCAL_CODES}
    return sorted(out)


KNOWN_CODINGS = _vocabulary_codings()
LEVEL_CODINGS = sorted(VOCAB.valueset("vertebral-levels").codes) + [
    (LOCAL_SYSTEM, c) for c in ("C1", "T12", "L1", "S1")
]
SYSTEMS = sorted({s for s, _ in KNOWN_CODINGS}) + ["http://loinc.org", "urn:oid:1.2.3", "http://example.org/x"]

text = st.text(alphabet=string.ascii_letters + string.digits + "-._ éß", min_size=1, max_size=12)
ids = st.text(alphabet=string.ascii_letters + string.digits + "-.", min_size=1, max_size=20)


@st.composite
def coding(draw: Any, pool: list[tuple[str, str]] = KNOWN_CODINGS) -> dict[str, Any]:
    if draw(st.integers(0, 3)):
        system, code = draw(st.sampled_from(pool))
    else:
        system, code = draw(st.sampled_from(SYSTEMS)), draw(text)
    out: dict[str, Any] = {"system": system, "code": code}
    if draw(st.booleans()):
        out["display"] = draw(text)
    return out


def concept(pool: list[tuple[str, str]] = KNOWN_CODINGS) -> st.SearchStrategy[dict[str, Any]]:
    return st.builds(
        lambda codings, label: {"coding": codings, **({"text": label} if label else {})},
        st.lists(coding(pool), min_size=1, max_size=3),
        st.none() | text,
    )


def status_concept(system: str, codes: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.sampled_from(codes).map(lambda c: {"coding": [{"system": system, "code": c}]})


@st.composite
def fhir_datetime(draw: Any) -> str:
    """Full or partial FHIR dateTime, mostly near the case clock so windows matter."""
    moment = CASE_NOW - timedelta(days=draw(st.integers(-400, 4000)), minutes=draw(st.integers(0, 1440)))
    if draw(st.integers(0, 9)) == 0:
        moment = datetime(draw(st.integers(1, 9999)), draw(st.integers(1, 12)), 1, tzinfo=CASE_NOW.tzinfo)
    form = draw(st.sampled_from(["year", "month", "date", "z", "offset", "fraction"]))
    day = f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"
    clock = f"T{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}"
    if form == "year":
        return day[:4]
    if form == "month":
        return day[:7]
    if form == "date":
        return day
    if form == "z":
        return day + clock + "Z"
    if form == "offset":
        return day + clock + draw(st.sampled_from(["+00:00", "-05:00", "+14:00"]))
    return day + clock + "." + str(draw(st.integers(0, 999))).zfill(3) + "+01:00"


def reference(rtype: str) -> st.SearchStrategy[dict[str, str]]:
    return ids.map(lambda i: {"reference": f"{rtype}/{i}"})


def optional(draw: Any, out: dict[str, Any], key: str, strategy: st.SearchStrategy[Any]) -> None:
    if draw(st.booleans()):
        out[key] = draw(strategy)


def base(draw: Any, rtype: str) -> dict[str, Any]:
    return {"resourceType": rtype, "id": draw(ids)}


numbers = (
    st.integers(0, 100)
    | st.integers(-(2**31), 2**31 - 1)
    | st.floats(-1e9, 1e9, allow_nan=False, allow_infinity=False)
    | st.floats(allow_nan=False, allow_infinity=False)  # up to ±1.8e308
    | st.integers(1, 500).map(lambda digits: 10**digits)  # a legal JSON number no float can hold
)
body_sites = st.lists(concept(LEVEL_CODINGS) | concept(), max_size=3)


@st.composite
def observation(draw: Any) -> dict[str, Any]:
    out = base(draw, "Observation")
    out["status"] = draw(
        st.sampled_from(
            ["registered", "preliminary", "final", "amended", "corrected", "cancelled", "entered-in-error", "unknown"]
        )
    )
    out["code"] = draw(concept())
    out["subject"] = draw(reference("Patient"))
    when = draw(st.sampled_from(["effectiveDateTime", "effectivePeriod", "effectiveInstant", "issued", None]))
    if when == "effectivePeriod":
        out[when] = {k: draw(fhir_datetime()) for k in draw(st.sets(st.sampled_from(["start", "end"])))}
    elif when in ("effectiveInstant", "issued"):
        out[when] = CASE_NOW.isoformat()
    elif when:
        out[when] = draw(fhir_datetime())
    value = draw(st.sampled_from(["quantity", "integer", "boolean", "concept", "string", None]))
    if value == "quantity":
        q: dict[str, Any] = {"value": draw(numbers)}
        optional(draw, q, "unit", st.sampled_from(["mo", "wk", "d", "a", "%", "10*9/L", "{score}"]))
        optional(draw, q, "code", st.sampled_from(["mo", "wk", "d", "a", "%", "{INR}"]))
        if "code" in q:
            q["system"] = "http://unitsofmeasure.org"
        out["valueQuantity"] = q
    elif value == "integer":
        out["valueInteger"] = draw(st.integers(-(2**31), 2**31 - 1))
    elif value == "boolean":
        out["valueBoolean"] = draw(st.booleans())
    elif value == "concept":
        out["valueCodeableConcept"] = draw(concept())
    elif value == "string":
        out["valueString"] = draw(text)
    optional(draw, out, "bodySite", concept(LEVEL_CODINGS) | concept())
    return out


SCORED = sorted(
    {c for vs in ("pain-severity", "ecog", "karnofsky", "lab-inr", "lab-platelets") for c in VOCAB.valueset(vs).codes}
)
NUMERIC = SCORED + [  # local codes read as numbers (scores, percentages, estimates)
    (LOCAL_SYSTEM, c)
    for c in LOCAL_CODES
    if c.startswith(("sins-", "tokuhashi-", "sorg-", "life-", "lesion-")) or "pct" in c
]
ANSWERS = [(LOCAL_SYSTEM, c) for c in ("acute", "subacute", "chronic", "escc-0", "escc-1b", "escc-2", "escc-3")]


@st.composite
def finding(draw: Any) -> dict[str, Any]:
    """An Observation the rules read (local finding, score or lab), recent and final, so facts become known."""
    out = base(draw, "Observation")
    out["status"] = draw(st.sampled_from(["final", "amended", "preliminary"]))
    system, code = draw(st.sampled_from([(LOCAL_SYSTEM, c) for c in LOCAL_CODES] + SCORED) | st.sampled_from(NUMERIC))
    out["code"] = {"coding": [{"system": system, "code": code}]}
    out["subject"] = draw(reference("Patient"))
    out["effectiveDateTime"] = (CASE_NOW - timedelta(days=draw(st.integers(0, 120)))).isoformat()
    value = draw(st.sampled_from(["boolean", "quantity", "integer", "answer"]))
    if value == "boolean":
        out["valueBoolean"] = draw(st.booleans())
    elif value == "quantity":
        out["valueQuantity"] = {"value": draw(numbers)}
        optional(draw, out["valueQuantity"], "code", st.sampled_from(["mo", "wk", "d", "a", "%"]))
    elif value == "integer":
        out["valueInteger"] = draw(st.integers(0, 20))
    else:
        out["valueCodeableConcept"] = {
            "coding": [dict(zip(("system", "code"), draw(st.sampled_from(ANSWERS)), strict=True))]
        }
    optional(draw, out, "bodySite", concept(LEVEL_CODINGS))
    return out


@st.composite
def condition(draw: Any) -> dict[str, Any]:
    out = base(draw, "Condition")
    out["code"] = draw(concept())
    out["subject"] = draw(reference("Patient"))
    clinical = ["active", "recurrence", "relapse", "inactive", "remission", "resolved"]
    optional(
        draw,
        out,
        "clinicalStatus",
        status_concept("http://terminology.hl7.org/CodeSystem/condition-clinical", clinical),
    )
    verification = ["unconfirmed", "provisional", "differential", "confirmed", "refuted", "entered-in-error"]
    optional(
        draw,
        out,
        "verificationStatus",
        status_concept("http://terminology.hl7.org/CodeSystem/condition-ver-status", verification),
    )
    optional(draw, out, "bodySite", body_sites)
    optional(
        draw, out, "severity", concept([("http://snomed.info/sct", c) for c in ("24484000", "6736007", "255604002")])
    )
    optional(draw, out, "onsetDateTime", fhir_datetime())
    optional(draw, out, "recordedDate", fhir_datetime())
    return out


MED_STATUS = {
    "MedicationRequest": [
        "active",
        "on-hold",
        "cancelled",
        "completed",
        "entered-in-error",
        "stopped",
        "draft",
        "unknown",
    ],
    "MedicationStatement": [
        "active",
        "completed",
        "entered-in-error",
        "intended",
        "stopped",
        "on-hold",
        "unknown",
        "not-taken",
    ],
}


@st.composite
def medication(draw: Any) -> dict[str, Any]:
    rtype = draw(st.sampled_from(sorted(MED_STATUS)))
    out = base(draw, rtype)
    out["status"] = draw(st.sampled_from(MED_STATUS[rtype]))
    out["subject"] = draw(reference("Patient"))
    if draw(st.integers(0, 4)):
        out["medicationCodeableConcept"] = draw(concept())
    else:
        out["medicationReference"] = draw(reference("Medication"))
    if rtype == "MedicationRequest":
        out["intent"] = draw(st.sampled_from(["order", "plan", "proposal"]))
        optional(draw, out, "authoredOn", fhir_datetime())
    else:
        optional(draw, out, "effectiveDateTime", fhir_datetime())
        optional(draw, out, "dateAsserted", fhir_datetime())
    return out


@st.composite
def allergy(draw: Any) -> dict[str, Any]:
    out = base(draw, "AllergyIntolerance")
    out["patient"] = draw(reference("Patient"))
    optional(draw, out, "code", concept())
    optional(
        draw,
        out,
        "clinicalStatus",
        status_concept(
            "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", ["active", "inactive", "resolved"]
        ),
    )
    optional(
        draw,
        out,
        "verificationStatus",
        status_concept(
            "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification",
            ["unconfirmed", "confirmed", "refuted", "entered-in-error"],
        ),
    )
    return out


@st.composite
def procedure(draw: Any) -> dict[str, Any]:
    out = base(draw, "Procedure")
    out["status"] = draw(
        st.sampled_from(
            ["preparation", "in-progress", "not-done", "on-hold", "stopped", "completed", "entered-in-error", "unknown"]
        )
    )
    out["subject"] = draw(reference("Patient"))
    out["code"] = draw(concept())
    optional(draw, out, "bodySite", body_sites)
    when = draw(st.sampled_from(["performedDateTime", "performedPeriod", None]))
    if when == "performedPeriod":
        out[when] = {k: draw(fhir_datetime()) for k in draw(st.sets(st.sampled_from(["start", "end"])))}
    elif when:
        out[when] = draw(fhir_datetime())
    if draw(st.booleans()):
        url = draw(
            st.sampled_from(["https://fhir.spinecds.org/StructureDefinition/dose-delivered", "http://example.org/x"])
        )
        out["extension"] = [{"url": url, "valueString": draw(text)}]
    return out


@st.composite
def diagnostic_report(draw: Any) -> dict[str, Any]:
    out = base(draw, "DiagnosticReport")
    out["status"] = draw(
        st.sampled_from(
            ["registered", "partial", "preliminary", "final", "amended", "corrected", "cancelled", "entered-in-error"]
        )
    )
    out["code"] = draw(concept())
    out["subject"] = draw(reference("Patient"))
    optional(draw, out, "effectiveDateTime", fhir_datetime())
    if draw(st.booleans()):
        out["issued"] = CASE_NOW.isoformat()
    optional(draw, out, "conclusion", text)
    return out


@st.composite
def service_request(draw: Any) -> dict[str, Any]:
    out = base(draw, "ServiceRequest")
    out["status"] = draw(
        st.sampled_from(["draft", "active", "on-hold", "revoked", "completed", "entered-in-error", "unknown"])
    )
    out["intent"] = draw(st.sampled_from(["proposal", "plan", "order"]))
    out["subject"] = draw(reference("Patient"))
    out["code"] = draw(concept())
    optional(draw, out, "bodySite", body_sites)
    optional(draw, out, "occurrenceDateTime", fhir_datetime())
    optional(draw, out, "authoredOn", fhir_datetime())
    return out


@st.composite
def risk_assessment(draw: Any) -> dict[str, Any]:
    """A (SORG) mortality RiskAssessment: predictions with probabilities over time ranges."""
    out = base(draw, "RiskAssessment")
    out["status"] = draw(st.sampled_from(["registered", "preliminary", "final", "amended", "corrected", "cancelled"]))
    out["subject"] = draw(reference("Patient"))
    out[draw(st.sampled_from(["method", "code"]))] = draw(
        st.just({"coding": [{"system": LOCAL_SYSTEM, "code": "sorg-spinal-metastasis-mortality"}]}) | concept()
    )
    optional(draw, out, "occurrenceDateTime", fhir_datetime())
    predictions = []
    for _ in range(draw(st.integers(0, 3))):
        prediction: dict[str, Any] = {"probabilityDecimal": draw(st.floats(0, 1) | numbers)}
        high: dict[str, Any] = {"value": draw(st.sampled_from([3, 90, 12, 1, 365]) | numbers)}
        optional(draw, high, "code", st.sampled_from(["d", "wk", "mo", "a", "h"]))
        prediction["whenRange"] = {"high": high}
        predictions.append(prediction)
    if predictions:
        out["prediction"] = predictions
    return out


@st.composite
def patient(draw: Any) -> dict[str, Any]:
    out = base(draw, "Patient")
    optional(draw, out, "gender", st.sampled_from(["male", "female", "other", "unknown"]))
    optional(draw, out, "birthDate", fhir_datetime().map(lambda d: d[:10]))
    optional(draw, out, "deceasedBoolean", st.booleans())
    return out


GENERATORS = {
    "Patient": patient(),
    "Condition": condition(),
    "Observation": observation(),
    "Finding": finding(),
    "Medication": medication(),
    "AllergyIntolerance": allergy(),
    "Procedure": procedure(),
    "DiagnosticReport": diagnostic_report(),
    "ServiceRequest": service_request(),
    "RiskAssessment": risk_assessment(),
}
any_resource = st.one_of(*GENERATORS.values(), finding(), finding())
charts = st.lists(any_resource, max_size=30)


def _by_type(resources: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for r in resources:
        out.setdefault(r["resourceType"], []).append(r)
    return out


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    resources=charts,
    drafts=st.lists(service_request(), max_size=3),
    available=st.sets(st.sampled_from(sorted(CATEGORIES))),
    backup=st.sampled_from(["true", "false", "unknown"]),
)
def test_extractor_yields_every_catalogue_fact_for_any_chart(
    resources: list[dict[str, Any]], drafts: list[dict[str, Any]], available: set[str], backup: str
) -> None:
    inp = ExtractionInput(
        vocab=VOCAB,
        resources=_by_type(resources),
        available=frozenset(available),
        thresholds=THRESHOLDS,
        now=CASE_NOW,
        facts=BASE.facts,
        draft_orders=drafts,
        surgical_backup=backup,
    )
    facts = extract_facts(inp)
    catalogue = set(catalogue_fact_ids())
    assert {f.fid for f in facts} == catalogue
    for fact in facts:
        if fact.known:
            assert isinstance(fact.value, bool | int | float | str), fact
            assert not (isinstance(fact.value, float) and fact.value != fact.value), fact  # no NaN
        else:
            assert fact.value is None, fact
        assert all(isinstance(r, str) and "/" in r for r in fact.refs), fact
    json.dumps([f.trace() for f in facts], allow_nan=False)  # the trace is valid JSON


@pytest.mark.parametrize("rtype", sorted(GENERATORS))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_extractor_on_charts_of_one_resource_type(rtype: str, data: st.DataObject) -> None:
    """Dense per type: a few resources of one type, every category available, so each reader runs."""
    resources = data.draw(st.lists(GENERATORS[rtype], min_size=1, max_size=4))
    inp = ExtractionInput(
        vocab=VOCAB,
        resources=_by_type(resources),
        available=frozenset(CATEGORIES),
        thresholds=THRESHOLDS,
        now=CASE_NOW,
        facts=BASE.facts,
        draft_orders=[r for r in resources if r["resourceType"] == "ServiceRequest"],
    )
    facts = extract_facts(inp)
    assert {f.fid for f in facts} == set(catalogue_fact_ids())
    json.dumps([f.trace() for f in facts], allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(value=fhir_datetime())
def test_partial_and_full_dates_parse_without_error(value: str) -> None:
    from service.facts.fhirdata import parse_time

    parsed = parse_time(value)
    assert parsed is not None and parsed.tzinfo is not None
    assert parsed.year == int(value[:4])


# ----------------------------------------------------------------------------- through the service


def hook_request(
    pat: dict[str, Any], resources: list[dict[str, Any]], hook: str, drafts: list[dict[str, Any]]
) -> dict[str, Any]:
    """The chart as the one request builder sends it; at order-select only the first draft is selected."""
    body = build_request(
        hook,
        pat["id"],
        [pat, *resources],
        user="Practitioner/prop",
        draft_orders=drafts,
        hook_instance="7f0c9b6e-2f5a-4a8e-9d43-5b7e1f0d2c11",
    )
    if hook == "order-select":
        body["context"]["selections"] = [f"ServiceRequest/{d['id']}" for d in drafts[:1]]
    return body


def _refuse(name: str) -> Any:
    raise AssertionError(f"response contains {name}, which is not JSON")


@pytest.fixture(scope="module")
def prop_client(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from service.app import create_app

    db: Path = tmp_path_factory.mktemp("props") / "spinecds.db"
    return create_app({"database_url": f"sqlite:///{db}"}, clock=lambda: CASE_NOW).test_client()


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
@given(
    pat=patient(),
    resources=charts,
    hook=st.sampled_from(sorted(SERVICE_FOR_HOOK)),
    drafts=st.lists(service_request(), min_size=1, max_size=3),
)
def test_any_chart_through_the_service_never_5xx(
    prop_client: Any, pat: dict[str, Any], resources: list[dict[str, Any]], hook: str, drafts: list[dict[str, Any]]
) -> None:
    body = hook_request(pat, resources, hook, drafts)
    response = prop_client.post(f"/cds-services/{SERVICE_FOR_HOOK[hook]}", json=body)
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    doc = json.loads(response.get_data(), parse_constant=_refuse)  # no NaN/Infinity in what we send back
    assert errors_only(check_cards_response(doc)) == []


def test_regression_numbers_no_float_can_hold(prop_client: Any) -> None:
    """Found by the properties above: 10**309 in valueQuantity.value / RiskAssessment whenRange was a 500."""
    sorg = {"coding": [{"system": LOCAL_SYSTEM, "code": "sorg-spinal-metastasis-mortality"}]}
    resources = [
        {
            "resourceType": "Observation",
            "id": "inr",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "34714-6"}]},
            "effectiveDateTime": CASE_NOW.isoformat(),
            "valueQuantity": {"value": 10**309},
        },
        {
            "resourceType": "RiskAssessment",
            "id": "sorg",
            "status": "final",
            "subject": {"reference": "Patient/p"},
            "method": sorg,
            "prediction": [{"probabilityDecimal": 0.5, "whenRange": {"high": {"value": 10**309, "code": "d"}}}],
        },
    ]
    inp = ExtractionInput(VOCAB, _by_type(resources), frozenset(CATEGORIES), THRESHOLDS, CASE_NOW, facts=BASE.facts)
    facts = {f.fid: f for f in extract_facts(inp)}
    assert not facts["F-INR"].known and not facts["F-SORG-MORT-90D"].known
    body = hook_request({"resourceType": "Patient", "id": "p"}, resources, "patient-view", [])
    assert prop_client.post("/cds-services/spine-metastasis-review", json=body).status_code == 200
