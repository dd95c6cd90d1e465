"""Time windows and prediction horizons are data (rules/facts.yaml, thresholds.yaml), never Python.

Every fact read from a dated record declares its window; the extractor asks only for declared windows; a
value just older than its fact's window is unknown ("stale"), one just inside it is used; the SORG horizons
that say which prediction is the 90-day and which the 1-year one are thresholds a site can change.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from conftest import CASE_NOW
from test_readable import BASE, CASES, THRESHOLDS, VOCAB

from service.cds.definitions import CATEGORIES
from service.engine.ruleset import DATED_RESOURCES
from service.facts.extract import ExtractionInput, extract_facts
from service.facts.model import PATIENT_LEVEL, Fact
from service.facts.vocabulary import LOCAL_SYSTEM

# Dated records read whatever their date (any_age: true in facts.yaml), reviewed: only the "no known allergies"
# statement, which makes the allergy list reviewed.
ANY_AGE = {("F-ALLERGY-PMMA", "no-known-allergy"), ("F-ALLERGY-CONTRAST", "no-known-allergy")}


def test_every_fact_read_from_a_dated_record_declares_a_window() -> None:
    """The loader refuses the rule base otherwise (test_rule_schema); here: the exceptions are the reviewed ones."""
    without = {
        fid
        for fid, f in BASE.facts.items()
        if f.window is None and any(s.resource in DATED_RESOURCES and not s.any_age for s in f.sources)
    }
    assert without == set()
    any_age = {(fid, code) for fid, f in BASE.facts.items() for s in f.sources if s.any_age for code in s.local_codes}
    assert any_age == ANY_AGE


def test_the_extractor_asks_only_for_windows_that_are_declared() -> None:
    """latest() reads the fact's window from facts.yaml: a fact it reads without one would never go stale."""
    asked_without: set[str] = set()

    class Watching(ExtractionInput):
        def window_name(self, fid: str, value: Any = None) -> str | None:
            name = super().window_name(fid, value)
            if name is None:
                asked_without.add(fid)
            return name

    for case in CASES:
        by_type: dict[str, list[dict[str, Any]]] = {}
        for r in case["resources"]:
            by_type.setdefault(r["resourceType"], []).append(r)
        drafts = case.get("draft_orders", [])
        extract_facts(Watching(VOCAB, by_type, frozenset(CATEGORIES), THRESHOLDS, CASE_NOW, drafts, facts=BASE.facts))
    assert asked_without == set()


def _observation(code: str, when: str, value: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": f"o-{code}",
        "status": "final",
        "code": {"coding": [{"system": LOCAL_SYSTEM, "code": code}]},
        "subject": {"reference": "Patient/p"},
        "effectiveDateTime": when,
        **value,
    }


def _sorg(when: str, high: dict[str, Any], probability: float = 0.4) -> dict[str, Any]:
    return {
        "resourceType": "RiskAssessment",
        "id": "sorg",
        "status": "final",
        "subject": {"reference": "Patient/p"},
        "occurrenceDateTime": when,
        "method": {"coding": [{"system": LOCAL_SYSTEM, "code": "sorg-spinal-metastasis-mortality"}]},
        "prediction": [{"outcome": {"text": "death"}, "probabilityDecimal": probability, "whenRange": {"high": high}}],
    }


def _fact(fid: str, resources: list[dict[str, Any]], thresholds: dict[str, float] | None = None) -> Fact:
    by_type: dict[str, list[dict[str, Any]]] = {}
    for r in resources:
        by_type.setdefault(r["resourceType"], []).append(r)
    inp = ExtractionInput(VOCAB, by_type, frozenset(CATEGORIES), thresholds or THRESHOLDS, CASE_NOW, facts=BASE.facts)
    return next(f for f in extract_facts(inp) if f.fid == fid and f.level == PATIENT_LEVEL)


TRUE = {"valueBoolean": True}
# fact -> a dated record it is read from (built for a given time)
DATED_RECORDS = {
    "F-NEURO-DEFICIT (deficit found)": lambda t: _observation("neuro-deficit", t, TRUE),
    "F-BRACE": lambda t: _observation("brace-tried", t, TRUE),
    "F-PRONE-OK": lambda t: _observation("prone-tolerance", t, TRUE),
    "F-COAG-UNCORRECTABLE": lambda t: _observation("coagulopathy-uncorrectable", t, TRUE),
    "F-PAIN-MIDLINE": lambda t: _observation("pain-midline-reproducible", t, TRUE),
    "F-PAIN-MECH": lambda t: _observation("pain-mechanical", t, TRUE),
    "F-PAIN-OFF-MIDLINE": lambda t: _observation("pain-radicular-or-off-midline", t, TRUE),
    "F-NEURO-DEFICIT": lambda t: _observation("neuro-deficit", t, {"valueBoolean": False}),
    "F-INFECT-SCREEN": lambda t: _observation("infection-screen-negative", t, TRUE),
    "F-PAIN-PERSIST-AFTER-RT": lambda t: _observation("pain-persistent-after-rt", t, TRUE),
    "F-LE": lambda t: _observation(
        "life-expectancy-estimate", t, {"valueQuantity": {"value": 6, "unit": "mo", "code": "mo"}}
    ),
    "F-TOK-TOTAL": lambda t: _observation("tokuhashi-revised-total", t, {"valueQuantity": {"value": 10}}),
    "F-SORG-MORT-90D": lambda t: _sorg(t, {"value": 90, "code": "d"}),
    "F-SORG-MORT-1Y": lambda t: _sorg(t, {"value": 1, "code": "a"}),
}


@pytest.mark.parametrize("name", sorted(DATED_RECORDS))
def test_a_record_older_than_its_facts_window_is_stale_and_one_inside_it_is_used(name: str) -> None:
    fid = name.split()[0]
    record = DATED_RECORDS[name]
    spec = BASE.facts[fid]
    reassuring = record(CASE_NOW.isoformat()).get("valueBoolean") is False and spec.window_if_false
    window = spec.window_if_false if reassuring else spec.window
    assert window is not None, f"{fid} declares no window"
    edge = CASE_NOW - timedelta(days=THRESHOLDS[window])
    inside = _fact(fid, [record((edge + timedelta(hours=1)).isoformat())])
    assert inside.known, inside
    stale = _fact(fid, [record((edge - timedelta(hours=1)).isoformat())])
    assert not stale.known and "stale" in (stale.note or ""), stale
    assert f"{THRESHOLDS[window]:g} days" in (stale.note or ""), stale


def test_a_normal_neurological_exam_goes_stale_sooner_than_a_deficit_it_found() -> None:
    """A normal exam a week old does not exclude cord compression; a deficit found 10 days ago is still a deficit
    (and, within the new-deficit window, still the suspected-MSCC emergency: core-neuro-deficit-10-days-emergency)."""
    assert BASE.facts["F-NEURO-DEFICIT"].window_if_false == "neuro.exam_window_days"
    ten_days = (CASE_NOW - timedelta(days=10)).isoformat()
    assert THRESHOLDS["neuro.exam_window_days"] < 10 < THRESHOLDS["neuro.deficit_window_days"]
    assert not _fact("F-NEURO-DEFICIT", [_observation("neuro-deficit", ten_days, {"valueBoolean": False})]).known
    assert _fact("F-NEURO-DEFICIT", [_observation("neuro-deficit", ten_days, TRUE)]).value is True
    assert _fact("F-NEURO-DEFICIT-NEW", [_observation("neuro-deficit", ten_days, TRUE)]).value is True


@pytest.mark.parametrize(
    ("high", "fid"),
    [
        ({"value": 90, "code": "d"}, "F-SORG-MORT-90D"),
        ({"value": 3, "code": "mo"}, "F-SORG-MORT-90D"),
        ({"value": 13, "code": "wk"}, "F-SORG-MORT-90D"),
        ({"value": 90}, "F-SORG-MORT-90D"),  # no unit: days
        ({"value": 1, "code": "a"}, "F-SORG-MORT-1Y"),
        ({"value": 12, "unit": "months"}, "F-SORG-MORT-1Y"),
        ({"value": 52, "code": "wk"}, "F-SORG-MORT-1Y"),
    ],
)
def test_a_sorg_prediction_is_read_at_the_horizon_it_falls_in(high: dict[str, Any], fid: str) -> None:
    when = (CASE_NOW - timedelta(days=1)).isoformat()
    other = "F-SORG-MORT-1Y" if fid == "F-SORG-MORT-90D" else "F-SORG-MORT-90D"
    assert _fact(fid, [_sorg(when, high, 0.3)]).value == 0.3
    assert not _fact(other, [_sorg(when, high, 0.3)]).known


@pytest.mark.parametrize("high", [{"value": 200, "code": "d"}, {"value": 90, "code": "furlong"}])
def test_a_prediction_at_no_declared_horizon_or_in_an_unreadable_unit_is_not_read(high: dict[str, Any]) -> None:
    when = (CASE_NOW - timedelta(days=1)).isoformat()
    assert not _fact("F-SORG-MORT-90D", [_sorg(when, high)]).known
    assert not _fact("F-SORG-MORT-1Y", [_sorg(when, high)]).known


def test_the_sorg_horizons_are_thresholds_a_site_can_change() -> None:
    when = (CASE_NOW - timedelta(days=1)).isoformat()
    six_months = _sorg(when, {"value": 180, "code": "d"}, 0.35)
    assert not _fact("F-SORG-MORT-90D", [six_months]).known
    horizon = BASE.facts["F-SORG-MORT-90D"].horizon
    assert horizon is not None
    site = dict(THRESHOLDS, **{horizon.high: 200.0})
    assert _fact("F-SORG-MORT-90D", [six_months], site).value == 0.35


def test_an_assessment_without_a_prediction_at_the_horizon_is_named_not_called_missing() -> None:
    """A SORG RiskAssessment on record that predicts at another horizon: the fact says so and cites it (it used to
    read "no SORG RiskAssessment")."""
    when = (CASE_NOW - timedelta(days=1)).isoformat()
    fact = _fact("F-SORG-MORT-90D", [_sorg(when, {"value": 1, "code": "a"}, 0.3)])
    assert not fact.known
    assert fact.note.startswith("no SORG prediction at ") and "days on record" in fact.note
    assert fact.refs, "the assessment read is cited"
