"""Neurology, imaging, RT-history, augmentation and scope facts read from standard codes (issue 13 part 2).

The patient cases (tests/cases/std-*.json) show the clinical behaviour end to end; these tests pin the
fact layer where a case cannot see it: per-level values, negated findings, unknown propagation.
"""

from __future__ import annotations

from typing import Any

import pytest
from conftest import CASE_NOW, ROOT

from service.cds.definitions import PREFETCH
from service.cds.pipeline import read_by_rules
from service.engine.ruleset import load_rulebase
from service.engine.runtime import RuleEngine
from service.facts.extract import ExtractionInput, extract_facts
from service.facts.model import Fact, known, unknown
from service.facts.vocabulary import Vocabulary

VOCAB = Vocabulary.load(ROOT / "fhir_profiles")
BASE = load_rulebase(ROOT / "rules")
THRESHOLDS = {k: float(v["value"]) for k, v in BASE.thresholds.items()}
SCT = "http://snomed.info/sct"
ICD = "http://hl7.org/fhir/sid/icd-10-cm"
CPT = "http://www.ama-assn.org/go/cpt"
T12 = {"coding": [{"system": SCT, "code": "280849005"}]}
L2 = {"coding": [{"system": SCT, "code": "53983007"}]}
ALL = frozenset({"conditions", "labs", "ps_pain", "findings", "meds", "allergies", "procedures", "imaging"})


def cc(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


def cond(cid: str, system: str, code: str, *sites: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Condition", "id": cid, "code": cc(system, code), "bodySite": list(sites), **extra}


def facts(resources: list[dict[str, Any]], available: frozenset[str] = ALL) -> dict[tuple[str, str], Fact]:
    by_type: dict[str, list[dict[str, Any]]] = {}
    for r in resources:
        by_type.setdefault(r["resourceType"], []).append(r)
    out = extract_facts(ExtractionInput(VOCAB, by_type, available, THRESHOLDS, CASE_NOW, facts=BASE.facts))
    return {(f.fid, f.level): f for f in out}


METS = [cond("m1", SCT, "94222008", T12), cond("m2", SCT, "94222008", L2)]


def augmentation(status: str = "completed", *sites: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Procedure",
        "id": "kp",
        "status": status,
        "code": cc(CPT, "22513"),
        "bodySite": list(sites),
        "performedDateTime": "2025-09-01",
    }


def test_prior_augmentation_per_level() -> None:
    got = facts([*METS, augmentation("completed", T12)])
    assert got[("F-PRIOR-VA", "T12")].value is True and got[("F-PRIOR-VA", "T12")].refs == ["Procedure/kp"]
    assert got[("F-PRIOR-VA", "L2")].known and got[("F-PRIOR-VA", "L2")].value is False
    # without the procedure list the untreated level is unknown, never false
    assert not facts([*METS, augmentation("completed", T12)], ALL - {"procedures"})[("F-PRIOR-VA", "L2")].known
    # a procedure without a level leaves every level open; a planned one is no prior augmentation
    assert not facts([*METS, augmentation("completed")])[("F-PRIOR-VA", "L2")].known
    assert facts([*METS, augmentation("preparation", T12)])[("F-PRIOR-VA", "T12")].value is False


def test_procedures_prefetch_fetches_augmentation_codes() -> None:
    template = PREFETCH["procedures"]
    assert "http://snomed.info/sct|1217123003" in template
    assert all(f"{CPT}|{code}" in template for code in range(22510, 22516))


def finding(oid: str, **value: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": oid, "status": "final", "effectiveDateTime": "2026-05-30", **value}


def test_cord_compression_from_a_finding_observation_and_not_from_a_negated_one() -> None:
    positive = finding("f1", code=cc("http://loinc.org", "18782-3"), valueCodeableConcept=cc(SCT, "71286001"))
    got = facts([*METS, positive])[("F-SCC-SYMPT", "*")]
    assert got.value is True and got.refs == ["Observation/f1"]
    negated = finding("f2", code=cc(SCT, "71286001"), valueBoolean=False)
    assert facts([*METS, negated])[("F-SCC-SYMPT", "*")].value is False


def test_pathological_fracture_from_an_imaging_conclusion() -> None:
    report = {
        "resourceType": "DiagnosticReport",
        "id": "ct",
        "status": "final",
        "code": cc("http://loinc.org", "24963-1"),
        "effectiveDateTime": "2026-05-28",
        "conclusionCode": [cc(SCT, "366908006")],
    }
    got = facts([cond("m1", SCT, "94222008"), report])
    assert got[("F-VCF", "unspecified")].value is True and got[("F-VCF", "unspecified")].refs == ["DiagnosticReport/ct"]
    assert got[("F-AXIAL-IMG", "*")].value is True  # CT lumbar spine


def test_reports_known_only_by_their_conclusion_are_kept_by_the_intake_filter() -> None:
    relevant = read_by_rules(VOCAB)
    report = {"resourceType": "DiagnosticReport", "code": cc("http://example.org/ris", "X1")}
    assert not relevant("DiagnosticReport", report)
    assert relevant("DiagnosticReport", {**report, "conclusionCode": [cc(SCT, "71286001")]})
    assert relevant("Observation", {"code": cc("http://example.org", "y"), "valueCodeableConcept": cc(SCT, "71286001")})


def test_new_deficit_window_is_a_threshold() -> None:
    deficit = cond("d", ICD, "G82.22", onsetDateTime="2026-05-10")  # 22 days before CASE_NOW
    assert facts([*METS, deficit])[("F-NEURO-DEFICIT-NEW", "*")].value is False
    wider = dict(THRESHOLDS, **{"neuro.new_deficit_window_days": 30.0})
    by_type: dict[str, list[dict[str, Any]]] = {"Condition": [*METS, deficit]}
    out = extract_facts(ExtractionInput(VOCAB, by_type, ALL, wider, CASE_NOW, facts=BASE.facts))
    assert next(f for f in out if f.fid == "F-NEURO-DEFICIT-NEW").value is True


@pytest.fixture(scope="module")
def engine() -> RuleEngine:
    return RuleEngine(BASE)


def test_unknown_new_deficit_with_spinal_metastasis_leaves_mscc_unknown(engine: RuleEngine) -> None:
    base = [known("F-MET", True, ["Condition/m"]), known("F-SCC-SYMPT", False), known("F-NEURO-DEFICIT", True)]
    ev = engine.evaluate([*base, unknown("F-NEURO-DEFICIT-NEW", "coded without onset")])
    assert ev.derived["D-MSCC"].value == "unknown"
    ev = engine.evaluate([*base, known("F-NEURO-DEFICIT-NEW", True)])
    assert ev.derived["D-MSCC"].value == "true"
    ev = engine.evaluate([*base, known("F-NEURO-DEFICIT-NEW", False)])
    assert ev.derived["D-MSCC"].value == "false"


def test_age_and_cancer_scope() -> None:
    child = {"resourceType": "Patient", "id": "p", "birthDate": "2016-06-02"}  # turns 10 tomorrow
    assert facts([child, *METS])[("F-SCOPE", "*")].value == "paediatric"
    adult = {"resourceType": "Patient", "id": "p", "birthDate": "2008-06-01"}  # 18 today
    assert facts([adult, *METS])[("F-SCOPE", "*")].value == "adult-cancer"
    assert facts([adult, cond("o", ICD, "M80.08XA")])[("F-SCOPE", "*")].value == "no-cancer"
    assert not facts([{"resourceType": "Patient", "id": "p"}, *METS])[("F-SCOPE", "*")].known


def rt_course(*sites: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Procedure",
        "id": "rt",
        "status": "completed",
        "code": cc(SCT, "1217123003"),
        "bodySite": list(sites),
        "performedPeriod": {"start": "2025-11-24", "end": "2025-11-28"},
    }


def test_history_of_irradiation_leaves_levels_open_only_without_course_summaries() -> None:
    z923 = cond("z", ICD, "Z92.3")
    alone = facts([*METS, z923])
    assert not alone[("F-PRIOR-RT", "T12")].known and not alone[("F-PRIOR-RT", "L2")].known
    with_course = facts([*METS, z923, rt_course(T12)])
    assert with_course[("F-PRIOR-RT", "T12")].value is True
    assert with_course[("F-PRIOR-RT", "L2")].known and with_course[("F-PRIOR-RT", "L2")].value is False
    unlocated = facts([*METS, rt_course()])  # a course without any site: every level open
    assert not unlocated[("F-PRIOR-RT", "L2")].known
    assert not facts([*METS, rt_course(T12)], ALL - {"procedures"})[("F-PRIOR-RT", "L2")].known


def test_deficit_from_a_standard_coded_finding_observation() -> None:
    seen = finding("r", code=cc("http://loinc.org", "75325-1"), valueCodeableConcept=cc(SCT, "267064002"))
    got = facts([*METS, seen])
    assert got[("F-NEURO-DEFICIT", "*")].value is True
    assert got[("F-NEURO-DEFICIT-NEW", "*")].value is True  # observed 2 days ago
    old = {**seen, "effectiveDateTime": "2025-01-01"}
    assert not facts([*METS, old])[("F-NEURO-DEFICIT", "*")].known
    denied = finding("n", code=cc(SCT, "267064002"), valueBoolean=False)
    assert not facts([*METS, denied])[("F-NEURO-DEFICIT", "*")].known
