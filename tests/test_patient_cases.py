"""Clinical behaviour, table-driven: each tests/cases/*.json is a patient written as FHIR data
with the rule IDs that must fire, those that must not, and the expected card indicators."""

from __future__ import annotations

from typing import Any

import pytest
from support.cases import build_request, card_groups, card_indicators, comparable, fired_rules, load_cases
from support.cds_checker import check_cards_response, errors_only

CASES = load_cases()


@pytest.mark.parametrize(("name", "case"), CASES, ids=[n for n, _ in CASES])
def test_case(client: Any, name: str, case: dict[str, Any]) -> None:
    service, body = build_request(case)
    response = client.post(f"/cds-services/{service}", json=body)
    expect = case["expect"]
    assert response.status_code == expect.get("status", 200), response.get_json()
    if response.status_code != 200:
        return
    cards = response.get_json()["cards"]
    assert errors_only(check_cards_response(response.get_json(), require_uuids=True)) == []
    fired = fired_rules(cards)
    if "no_cards_reason" in expect:
        assert cards == [], f"{name}: no cards expected ({expect['no_cards_reason']}); fired {sorted(fired)}"
    missing = set(expect.get("fire", [])) - fired
    assert not missing, f"{name}: expected rules did not fire: {sorted(missing)}; fired {sorted(fired)}"
    unexpected = set(expect.get("not_fire", [])) & fired
    assert not unexpected, f"{name}: rules fired that must not: {sorted(unexpected)}"
    indicators = card_indicators(cards)
    for group, indicator in expect.get("cards", {}).items():
        assert indicators.get(group) == indicator, f"{name}: card {group}: {indicators}"
    if "first_card" in expect:
        assert cards and cards[0]["extension"]["org.spinecds.trace"]["card"] == expect["first_card"], indicators
    for group in expect.get("absent_cards", []):
        assert group not in indicators, f"{name}: card {group} must not be shown"
    for group, actions in expect.get("draft_actions", {}).items():
        assert draft_actions(cards, group) == sorted(actions), f"{name}: actions on the draft in card {group}"


def draft_actions(cards: list[dict[str, Any]], group: str) -> list[str]:
    """Actions of a card group that change the draft order: "delete:Type/id" or "update:Type/id:<levels kept>"."""
    out = []
    for card in cards:
        if group not in card_groups(card):
            continue
        for action in (a for s in card.get("suggestions", []) for a in s["actions"]):
            if action["type"] == "delete":
                out.append(f"delete:{action['resourceId']}")
            elif action["type"] == "update":
                resource = action["resource"]
                out.append(f"update:{resource['resourceType']}/{resource['id']}:{len(resource['bodySite'])}")
    return sorted(out)


@pytest.mark.parametrize(("name", "case"), CASES, ids=[n for n, _ in CASES])
def test_case_is_order_independent(client: Any, name: str, case: dict[str, Any]) -> None:
    """Shuffling the bundles' entries gives the same cards."""
    service, body = build_request(case)
    base = client.post(f"/cds-services/{service}", json=body)
    if base.status_code != 200:
        return
    for seed in (1, 2, 3):
        _, shuffled = build_request(case, shuffle_seed=seed)
        again = client.post(f"/cds-services/{service}", json=shuffled)
        assert comparable(again.get_json()["cards"]) == comparable(base.get_json()["cards"])


def test_there_are_cases() -> None:
    assert len(CASES) >= 5
