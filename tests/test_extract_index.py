"""The extractor's per-request index of Observations by coding gives exactly what a scan gives."""

from __future__ import annotations

from datetime import datetime
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


def _dated(rid: str, code: str, when: str | None, status: str = "final") -> dict[str, Any]:
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "id": rid,
        "status": status,
        "code": {"coding": [{"system": LOCAL_SYSTEM, "code": code}]},
        "valueBoolean": True,
    }
    if when is not None:
        obs["effectiveDateTime"] = when
    return obs


def test_each_list_is_sorted_as_the_whole_chart_would_be() -> None:
    """Only the lists a fact asks for are sorted (ExtractionInput._at): each must be exactly the subsequence of
    the whole chart sorted latest first (time, then id, descending; undated last; equal keys in input order)."""
    import random

    from service.facts import fhirdata as fd

    times = ["2026-05-29", "2026-05-29T08:00:00Z", "2026-05-29T10:00:00+02:00", "2026-05", "2025", None]
    codes = ["neuro-deficit", "brace-tried", "prone-tolerance"]
    rng = random.Random(5)
    chart = [
        _dated(
            f"o{rng.randrange(12)}", rng.choice(codes), rng.choice(times), rng.choice(["final", "final", "cancelled"])
        )
        for _ in range(80)
    ]
    inp = _input(chart)
    oldest = datetime.min.replace(tzinfo=CASE_NOW.tzinfo)
    whole = sorted(
        (o for o in chart if o["status"] == "final"),
        key=lambda o: (fd.observation_time(o) or oldest, str(o.get("id"))),
        reverse=True,
    )
    assert [id(o) for o in inp.counted_observations()] == [id(o) for o in whole]
    for code in codes:
        expected = [id(o) for o in whole if o["code"]["coding"][0]["code"] == code]
        assert len(expected) > 10
        assert [id(o) for o in inp.observations_with_local_code(code)] == expected, code
