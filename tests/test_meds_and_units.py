"""Medication orders as EHRs send them (RxNorm clinical drugs, medicationReference) and lab values in
the units labs report: each fact is compared in its threshold's unit or is unknown, never guessed."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import CASE_NOW, ROOT

from service.engine.ruleset import load_rulebase
from service.facts.extract import ExtractionInput, extract_facts
from service.facts.model import Fact
from service.facts.vocabulary import LOCAL_SYSTEM, Vocabulary
from service.fhir.pool import ResourcePool

VOCAB = Vocabulary.load(ROOT / "fhir_profiles")
BASE = load_rulebase(str(ROOT / "rules"), {})
THRESHOLDS = {k: float(v["value"]) for k, v in BASE.thresholds.items()}
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
ALL = frozenset({"conditions", "labs", "ps_pain", "findings", "meds", "allergies", "procedures", "imaging"})


def facts(*resources: dict[str, Any]) -> dict[str, Fact]:
    """Facts from resources that went through the real intake (R4 validation in the ResourcePool)."""
    pool = ResourcePool()
    for r in resources:
        pool.add_payload(r, "test")
    assert not pool.skipped, pool.skipped
    found = extract_facts(ExtractionInput(VOCAB, pool.by_type, ALL, THRESHOLDS, CASE_NOW, facts=BASE.facts))
    return {f.fid: f for f in found if f.level == "*"}


def drug(code: str, name: str) -> dict[str, Any]:
    return {"coding": [{"system": RXNORM, "code": code, "display": name}], "text": name}


def order(rid: str, **medication: Any) -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "id": rid,
        "status": "active",
        "intent": "order",
        "subject": {"reference": "Patient/p1"},
        "authoredOn": "2026-05-20",
        **medication,
    }


@pytest.mark.parametrize(
    ("code", "name", "fid", "value"),
    [
        ("1049621", "oxycodone hydrochloride 5 MG Oral Tablet", "F-ANALG-STEP", 3),
        ("1049623", "oxycodone hydrochloride 5 MG Oral Tablet [Roxicodone]", "F-ANALG-STEP", 3),
        ("835603", "tramadol hydrochloride 50 MG Oral Tablet", "F-ANALG-STEP", 2),
        ("855332", "Warfarin Sodium 5 MG Oral Tablet", "F-ANTICOAG", True),
        ("1364445", "apixaban 5 MG Oral Tablet", "F-ANTICOAG", True),
        ("854235", "0.4 ML Enoxaparin sodium 100 MG/ML Prefilled Syringe", "F-ANTICOAG", True),
        ("197582", "Dexamethasone 4 MG Oral Tablet", "F-STEROID", True),
    ],
)
def test_clinical_drug_orders_set_their_fact(code: str, name: str, fid: str, value: Any) -> None:
    fact = facts(order("m1", medicationCodeableConcept=drug(code, name)))[fid]
    assert fact.known and fact.value == value and fact.refs == ["MedicationRequest/m1"]


def test_contained_medication_reference_reads_like_a_codeable_concept() -> None:
    med = order(
        "m1",
        contained=[{"resourceType": "Medication", "id": "med", "code": drug("855332", "Warfarin Sodium 5 MG")}],
        medicationReference={"reference": "#med"},
    )
    assert facts(med)["F-ANTICOAG"].value is True


@pytest.mark.parametrize("reference", ["Medication/oxy", "https://ehr.example.org/fhir/Medication/oxy"])
def test_referenced_medication_in_the_data_reads_like_a_codeable_concept(reference: str) -> None:
    medication = {"resourceType": "Medication", "id": "oxy", "code": drug("1049621", "oxycodone 5 MG Oral Tablet")}
    found = facts(order("m1", medicationReference={"reference": reference}), medication)
    assert found["F-ANALG-STEP"].known and found["F-ANALG-STEP"].value == 3


@pytest.mark.parametrize(
    "reference",
    [
        {"reference": "Medication/missing"},
        {"reference": "#not-contained"},
        {"display": "oxycodone 5 mg tablet"},
        {"identifier": {"system": "urn:oid:2.16.840.1.113883.6.69", "value": "1049621"}},
    ],
)
def test_an_unresolvable_medication_reference_is_unknown_not_absent(reference: dict[str, Any]) -> None:
    found = facts(order("m1", medicationReference=reference))
    for fid in ("F-ANTICOAG", "F-STEROID", "F-ANALG-STEP"):
        assert not found[fid].known, fid
        assert found[fid].refs == ["MedicationRequest/m1"]
        assert "not in the data" in found[fid].note


def lab(code: str, value: float, unit: str | None = None, ucum: str | None = None) -> dict[str, Any]:
    quantity: dict[str, Any] = {"value": value}
    if unit is not None:
        quantity["unit"] = unit
    if ucum is not None:
        quantity.update(system=UCUM, code=ucum)
    return {
        "resourceType": "Observation",
        "id": f"o-{code}",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2026-05-30",
        "valueQuantity": quantity,
    }


@pytest.mark.parametrize(
    ("code", "value", "unit", "ucum", "expected"),
    [
        ("777-3", 45, "10*9/L", "10*9/L", 45.0),
        ("777-3", 45, "x10E3/uL", None, 45.0),
        ("26515-7", 45, "K/uL", None, 45.0),
        ("777-3", 45000, "/uL", "/uL", 45.0),
        ("778-1", 45000, "cells/mm3", "/mm3", 45.0),
        ("777-3", 45, "10^9/L", None, 45.0),
        ("777-3", 45, "10*3/uL", "10*3/uL", 45.0),
    ],
)
def test_platelets_are_compared_in_10e9_per_litre(
    code: str, value: float, unit: str, ucum: str | None, expected: float
) -> None:
    fact = facts(lab(code, value, unit, ucum))["F-PLT"]
    assert fact.known and fact.value == pytest.approx(expected)


@pytest.mark.parametrize(("unit", "why"), [("/xyz", "'/xyz' not recognised"), (None, "no unit given")])
def test_platelets_with_an_unreadable_unit_are_unknown(unit: str | None, why: str) -> None:
    fact = facts(lab("777-3", 45000, unit))["F-PLT"]
    assert not fact.known and why in fact.note and fact.refs == ["Observation/o-777-3"]


def test_an_unreadable_latest_platelet_count_is_not_replaced_by_an_older_one() -> None:
    older = {**lab("777-3", 250, "10*9/L"), "id": "older", "effectiveDateTime": "2026-05-20"}
    assert not facts(older, lab("777-3", 45000, "platelets"))["F-PLT"].known


@pytest.mark.parametrize(
    ("code", "unit", "ucum"), [("6301-6", None, None), ("46418-0", "{INR}", "{INR}"), ("34714-6", "INR", None)]
)
def test_inr_is_unitless(code: str, unit: str | None, ucum: str | None) -> None:
    fact = facts(lab(code, 2.1, unit, ucum))["F-INR"]
    assert fact.known and fact.value == pytest.approx(2.1)


def life_expectancy(value: float, unit: str | None, code: str | None = None) -> dict[str, Any]:
    quantity: dict[str, Any] = {"value": value}
    if unit:
        quantity["unit"] = unit
    if code:
        quantity.update(system=UCUM, code=code)
    return {
        "resourceType": "Observation",
        "id": "le",
        "status": "final",
        "code": {"coding": [{"system": LOCAL_SYSTEM, "code": "life-expectancy-estimate"}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2026-05-30",
        "valueQuantity": quantity,
    }


@pytest.mark.parametrize(
    ("value", "unit", "code", "months"),
    [(2, "years", None, 24.0), (2, "year", "a", 24.0), (6, "mo", "mo", 6.0), (8, "weeks", None, 8 / 4.345)],
)
def test_life_expectancy_unit_as_text_is_read(value: float, unit: str, code: str | None, months: float) -> None:
    fact = facts(life_expectancy(value, unit, code))["F-LE"]
    assert fact.known and fact.value == pytest.approx(months)


@pytest.mark.parametrize("unit", [None, "fortnights"])
def test_life_expectancy_without_a_readable_unit_is_unknown(unit: str | None) -> None:
    assert not facts(life_expectancy(2, unit))["F-LE"].known


def test_a_unit_read_once_reads_the_same_for_every_target_and_every_later_value() -> None:
    """quantity_in remembers each unit spelling's factor per target unit (fhirdata._unit_factor): the same
    spelling read again, or read for another target, gives the factor of that target; an unreadable one
    is refused every time; a long spelling is read without being remembered."""
    from service.facts import fhirdata as fd

    def obs(value: float, code: str | None, unit: str | None) -> dict[str, Any]:
        quantity: dict[str, Any] = {"value": value}
        if code is not None:
            quantity["code"] = code
        if unit is not None:
            quantity["unit"] = unit
        return {"valueQuantity": quantity}

    for _ in range(2):  # the second round is answered from the memo
        assert fd.quantity_in(obs(30.44, "d", None), "mo") == pytest.approx(1.0)
        assert fd.quantity_in(obs(30.44, "d", None), "d") == pytest.approx(30.44)
        assert fd.quantity_in(obs(2, None, " years "), "mo") == 24
        assert fd.quantity_in(obs(250000, "/uL", "cells/uL"), "10*9/L") == 250
        assert fd.quantity_in(obs(1.2, None, None), "{INR}") == 1.2
        assert fd.quantity_in(obs(7, "bogus", "K/uL"), "10*9/L") == 7  # the code first, then the unit text
        with pytest.raises(fd.UnitProblem, match="no unit given"):
            fd.quantity_in(obs(250, None, "  "), "10*9/L")
        with pytest.raises(fd.UnitProblem, match="'mg' not recognised"):
            fd.quantity_in(obs(250, "mg", "milligram"), "10*9/L")
        long = "x" * 70 + "k/ul"
        with pytest.raises(fd.UnitProblem, match="not recognised"):
            fd.quantity_in(obs(250, long, None), "10*9/L")


def test_the_latest_platelet_count_says_how_many_counts_were_read() -> None:
    """measured() reads each value once: the latest readable count wins, and the note counts the readable ones
    (not an Observation without a value, not an older one whose unit cannot be read)."""
    newest = {**lab("777-3", 250, "10*9/L"), "id": "newest", "effectiveDateTime": "2026-05-30"}
    empty = {**lab("777-3", 1, "10*9/L"), "id": "empty", "effectiveDateTime": "2026-05-29"}
    del empty["valueQuantity"]["value"]
    older = {**lab("777-3", 180000, "/uL", "/uL"), "id": "older", "effectiveDateTime": "2026-05-28"}
    unreadable = {**lab("777-3", 45, "platelets"), "id": "unreadable", "effectiveDateTime": "2026-05-27"}
    fact = facts(newest, empty, older, unreadable)["F-PLT"]
    assert fact.known and fact.value == 250 and fact.refs == ["Observation/newest"]
    assert fact.note.endswith("; latest of 2"), fact.note
    assert facts(newest)["F-PLT"].note.endswith("(30 May 2026)")


@pytest.mark.parametrize(
    ("number", "expected"),
    [(5, 5.0), (-2.5, -2.5), (True, 1.0), (1e100, 1e100), (-1e100, -1e100), (1.5e100, None), (-1.5e100, None),
     (float("inf"), None), (float("-inf"), None), (float("nan"), None), (10**400, None), (-(10**400), None)],
)  # fmt: skip
def test_a_number_no_float_holds_or_beyond_any_clinical_value_is_no_value(number: float, expected: float) -> None:
    from service.facts import fhirdata as fd

    assert fd.finite_number(number) == expected
