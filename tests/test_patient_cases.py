"""Clinical behaviour, table-driven: each tests/cases/*.json is a patient written as FHIR data
with the rule IDs that must fire, those that must not, and the expected card indicators.

Every case asserts something positive (a rule that fires, a card, an action on the draft order,
an error status, or ``no_cards_reason`` when the patient is out of scope): ``load_cases`` refuses
a case that asserts only absences, since it would pass with a product that answers nothing. Every
rule of the rule base has a case where it fires and one where it must not."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from conftest import CASE_NOW, ROOT
from support.cases import (
    CaseError,
    assert_case,
    build_request,
    comparable,
    load_cases,
)

from service.app import create_app
from service.engine.ruleset import load_rulebase

CASES = load_cases()
_SITE_CLIENTS: dict[str, Any] = {}


def client_for(case: dict[str, Any], client: Any) -> Any:
    """The suite's client, or one for a site configured as the case says (``settings``, e.g. no surgical backup)."""
    settings = case.get("settings")
    if not settings:
        return client
    key = json.dumps(settings, sort_keys=True)
    if key not in _SITE_CLIENTS:
        db = Path(tempfile.mkdtemp(prefix="spinecds-case-")) / "spinecds.db"
        app = create_app({"database_url": f"sqlite:///{db}", **settings}, clock=lambda: CASE_NOW)
        _SITE_CLIENTS[key] = app.test_client()
    return _SITE_CLIENTS[key]


@pytest.mark.parametrize(("name", "case"), CASES, ids=[n for n, _ in CASES])
def test_case(client: Any, name: str, case: dict[str, Any]) -> None:
    assert_case(client_for(case, client), name, case)


@pytest.mark.parametrize(("name", "case"), CASES, ids=[n for n, _ in CASES])
def test_case_is_order_independent(client: Any, name: str, case: dict[str, Any]) -> None:
    """Shuffled bundle entries give the same cards: the same non-empty cards, or none for a case out of scope."""
    client = client_for(case, client)
    service, body = build_request(case)
    base = client.post(f"/cds-services/{service}", json=body)
    assert base.status_code == case["expect"].get("status", 200)
    if base.status_code != 200:
        return
    expected = comparable(base.get_json()["cards"])
    if "no_cards_reason" in case["expect"]:
        assert expected == []
    else:
        assert expected, f"{name}: no cards to compare"
    for seed in (1, 2, 3):
        _, shuffled = build_request(case, shuffle_seed=seed)
        again = client.post(f"/cds-services/{service}", json=shuffled)
        assert comparable(again.get_json()["cards"]) == expected


def test_every_rule_has_a_case_where_it_fires_and_one_where_it_must_not() -> None:
    fire = {r for _, case in CASES for r in case["expect"].get("fire", [])}
    not_fire = {r for _, case in CASES for r in case["expect"].get("not_fire", [])}
    rules = set(load_rulebase(ROOT / "rules").rule_ids)
    assert sorted(rules - fire) == [], "rules without a case where they fire (add tests/cases/cat-<rule>-*.json)"
    assert sorted(rules - not_fire) == [], "rules without a case where they must not fire"
    assert (fire | not_fire) <= rules, f"cases name rules that do not exist: {sorted((fire | not_fire) - rules)}"


def test_a_case_that_asserts_only_absences_is_refused(tmp_path: Path) -> None:
    absent_only = {"resources": [], "expect": {"not_fire": ["NEU-01"], "absent_cards": ["emergency-mscc"]}}
    (tmp_path / "absent-only.json").write_text(json.dumps(absent_only), encoding="utf-8")
    with pytest.raises(CaseError, match="absent-only: asserts only absences"):
        load_cases(tmp_path)
    unsaid_only = {"resources": [], "expect": {"does_not_say": {"prognosis": "Revised Tokuhashi 12-15"}}}
    (tmp_path / "absent-only.json").write_text(json.dumps(unsaid_only), encoding="utf-8")
    with pytest.raises(CaseError, match="absent-only: asserts only absences"):
        load_cases(tmp_path)
    contradictory = {"resources": [], "expect": {"fire": ["NEU-01"], "no_cards_reason": "out of scope"}}
    (tmp_path / "absent-only.json").write_text(json.dumps(contradictory), encoding="utf-8")
    with pytest.raises(CaseError, match="no_cards_reason"):
        load_cases(tmp_path)
