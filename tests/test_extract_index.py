"""The extractor's per-request index of Observations by coding gives exactly what a scan gives."""

from __future__ import annotations

from typing import Any

from conftest import CASE_NOW
from test_readable import BASE, CASES, THRESHOLDS, VOCAB

from service.cds.definitions import CATEGORIES
from service.facts.extract import ExtractionInput, extract_facts, observations
from service.facts.vocabulary import LOCAL_SYSTEM
from service.fhir.pool import RULE_TYPES


def _input(resources: list[dict[str, Any]]) -> ExtractionInput:
    by_type: dict[str, list[dict[str, Any]]] = {}
    for r in resources:
        by_type.setdefault(r["resourceType"], []).append(r)
    return ExtractionInput(VOCAB, by_type, frozenset(CATEGORIES), THRESHOLDS, CASE_NOW, facts=BASE.facts)


def test_observations_in_a_valueset_are_those_a_scan_finds_in_the_same_order() -> None:
    checked = 0
    for case in CASES:
        inp = _input([r for r in case["resources"] if r.get("resourceType") in RULE_TYPES])
        if not inp.of("Observation"):
            continue
        for vs_id in VOCAB.ids:
            for element in ("code", "valueCodeableConcept"):
                scan = observations(inp, lambda o: VOCAB.concept_in(vs_id, o.get(element)))  # noqa: B023
                assert inp.observations_in(vs_id, element) == scan, (vs_id, element)
                checked += len(scan)
    assert checked > 100


def _local(rid: str, code: str, value: float, unit: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": rid,
        "status": "final",
        "code": {"coding": [{"system": LOCAL_SYSTEM, "code": code}]},
        "effectiveDateTime": "2026-05-29",
        "valueQuantity": {"value": value, "unit": unit, "code": unit},
    }


def test_a_local_code_is_never_answered_with_another_codes_observations() -> None:
    """Regression: the first local-code lookup of a request returned the observations of the last code indexed
    (a loop variable shadowed the code asked for), so a life-expectancy estimate became the lesion size."""
    facts = {f.fid: f for f in extract_facts(_input([_local("le", "life-expectancy-estimate", 12, "mo")]))}
    assert not facts["F-LESION-SIZE"].known
    assert facts["F-LE"].known and facts["F-LE"].value == 12
    facts = {f.fid: f for f in extract_facts(_input([_local("size", "lesion-max-diameter", 3, "cm")]))}
    assert facts["F-LESION-SIZE"].known and facts["F-LESION-SIZE"].value == 3
