"""Scores summed from their components and graded answers read from data (rules/facts.yaml, ValueSets).

SINS and the revised Tokuhashi score are the sum of their component codes when no total is documented; which
codes are components is the ``summed: true`` source in rules/facts.yaml, not a list in Python. An ESCC grade
is an answer of ValueSet escc-grade whose grade is one of F-ESCC's declared values.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from conftest import CASE_NOW
from test_fact_windows import _fact, _observation

from service.facts.vocabulary import LOCAL_SYSTEM

RECENT = (CASE_NOW - timedelta(days=1)).isoformat()
SINS = {
    "sins-location": 3,
    "sins-pain": 3,
    "sins-bone-lesion": 2,
    "sins-alignment": 2,
    "sins-collapse": 1,
    "sins-posterolateral": 1,
}
TOKUHASHI = {
    "tokuhashi-kps-points": 1,
    "tokuhashi-extraspinal-bone-points": 2,
    "tokuhashi-vertebral-mets-points": 1,
    "tokuhashi-visceral-points": 2,
    "tokuhashi-primary-points": 3,
    "tokuhashi-palsy-points": 2,
}


def _scores(points: dict[str, int]) -> list[dict[str, Any]]:
    return [_observation(code, RECENT, {"valueQuantity": {"value": value}}) for code, value in points.items()]


@pytest.mark.parametrize(("fid", "points"), [("F-SINS", SINS), ("F-TOK-TOTAL", TOKUHASHI)])
def test_a_score_is_the_sum_of_all_its_components(fid: str, points: dict[str, int]) -> None:
    fact = _fact(fid, _scores(points))
    assert fact.known and fact.value == sum(points.values()), fact
    assert len(fact.refs) == len(points)


@pytest.mark.parametrize(("fid", "points"), [("F-SINS", SINS), ("F-TOK-TOTAL", TOKUHASHI)])
def test_a_score_with_a_component_missing_is_unknown(fid: str, points: dict[str, int]) -> None:
    for missing in points:
        fact = _fact(fid, _scores({c: v for c, v in points.items() if c != missing}))
        assert not fact.known, (missing, fact)


def test_a_documented_total_wins_over_the_components() -> None:
    total = _observation("sins-total", RECENT, {"valueQuantity": {"value": 14}})
    assert _fact("F-SINS", [total, *_scores(SINS)]).value == 14


def _escc(code: str) -> dict[str, Any]:
    return _observation(
        "escc-grade", RECENT, {"valueCodeableConcept": {"coding": [{"system": LOCAL_SYSTEM, "code": code}]}}
    )


@pytest.mark.parametrize(("answer", "grade"), [("escc-0", "0"), ("escc-1c", "1c"), ("escc-2", "2"), ("escc-3", "3")])
def test_an_escc_answer_gives_its_grade(answer: str, grade: str) -> None:
    assert _fact("F-ESCC", [_escc(answer)]).value == grade


@pytest.mark.parametrize("answer", ["escc-4", "2", "sins-total"])
def test_an_answer_outside_the_escc_valueset_is_no_grade(answer: str) -> None:
    assert not _fact("F-ESCC", [_escc(answer)]).known
