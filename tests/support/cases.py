"""Patient cases: one JSON file per case under tests/cases/ (see tests/cases/README.md) and, coded only in
standard terminologies, under tests/cases-standard/ (see tests/cases-standard/README.md)."""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from service.cds.request_builder import case_request

CASES_DIR = Path(__file__).resolve().parent.parent / "cases"
STANDARD_CASES_DIR = Path(__file__).resolve().parent.parent / "cases-standard"


POSITIVE = ("fire", "cards", "first_card", "draft_actions", "says")  # what a case can expect to be there


class CaseError(ValueError):
    pass


def load_cases(directory: Path = CASES_DIR) -> list[tuple[str, dict[str, Any]]]:
    """Every case of ``directory``; a case that asserts only absences is refused (it passes on a broken product)."""
    cases = [(p.stem, json.loads(p.read_text(encoding="utf-8"))) for p in sorted(directory.glob("*.json"))]
    for name, case in cases:
        check_case(name, case)
    return cases


def check_case(name: str, case: dict[str, Any]) -> None:
    expect = case.get("expect")
    if not isinstance(expect, dict):
        raise CaseError(f"{name}: no expect")
    positive = [key for key in POSITIVE if expect.get(key)]
    reason = expect.get("no_cards_reason")
    if expect.get("status", 200) != 200:
        return  # an error status is itself the positive expectation
    if reason is not None and (positive or not isinstance(reason, str) or not reason.strip()):
        raise CaseError(f"{name}: no_cards_reason says why the patient gets no card; it excludes {positive}")
    if reason is None and not positive:
        raise CaseError(
            f"{name}: asserts only absences; add what must fire (fire/cards/first_card/draft_actions/says) "
            "or an explicit no_cards_reason when the patient is out of scope"
        )


def build_request(case: dict[str, Any], *, shuffle_seed: int | None = None) -> tuple[str, dict[str, Any]]:
    """The CDS Hooks request of a case (service.cds.request_builder.case_request), with the case's test-only
    perturbations: another patient's and unreadable resources sent in the keys of their type, next pages the
    service cannot follow, keys sent as written, and the entries of each key shuffled with ``shuffle_seed``."""
    resources = [*case["resources"], *case.get("other_patient_resources", []), *case.get("unreadable_resources", [])]
    service, body = case_request(case, user="Practitioner/case-clinician", resources=resources)
    body["hookInstance"] = f"00000000-0000-4000-8000-{abs(hash(body['context']['patientId'])) % 10**12:012d}"
    prefetch = body["prefetch"]
    if shuffle_seed is not None:
        for value in prefetch.values():
            if isinstance(value, dict) and value.get("resourceType") == "Bundle" and "entry" in value:
                random.Random(shuffle_seed).shuffle(value["entry"])
    for key in case.get("paginated_keys", []):  # a next page the service cannot follow (no fhirServer)
        prefetch[key]["link"] = [{"relation": "next", "url": f"https://ehr.invalid/fhir/{key}?page=2"}]
    for key, value in case.get("prefetch_override", {}).items():  # a wrong-shaped key, sent as written
        prefetch[key] = value
    return service, body


def fired_rules(cards: Iterable[dict[str, Any]]) -> set[str]:
    return {r for c in cards for r in c["extension"]["org.spinecds.trace"]["rules"]}


INDICATOR_RANK = ("info", "warning", "critical")


def card_indicators(cards: Iterable[dict[str, Any]]) -> dict[str, str]:
    """Card group -> indicator of its conclusions in this response (a card shows one decision,
    which may hold several groups: the trace's ``groups``), and decision -> the card's indicator."""
    out: dict[str, str] = {}
    for c in cards:
        trace = c["extension"]["org.spinecds.trace"]
        shown = {
            **trace.get("groups", {trace["card"]: c["indicator"]}),
            trace.get("decision", trace["card"]): c["indicator"],
        }
        for group, indicator in shown.items():
            if group not in out or INDICATOR_RANK.index(indicator) > INDICATOR_RANK.index(out[group]):
                out[group] = indicator
    return out


def card_groups(card: dict[str, Any]) -> set[str]:
    trace = card["extension"]["org.spinecds.trace"]
    return {trace["card"], *trace.get("groups", {})}


def comparable(cards: Iterable[dict[str, Any]]) -> list[Any]:
    """Cards without their random uuids, for order-independence checks."""
    out = []
    for c in cards:
        trace = c["extension"]["org.spinecds.trace"]
        out.append(
            (
                c["summary"],
                c["indicator"],
                c["detail"],
                trace["rules"],
                json.dumps(trace["facts"], sort_keys=True),
                len(c.get("suggestions", [])),
            )
        )
    return sorted(out)


def assert_case(client: Any, name: str, case: dict[str, Any]) -> None:
    """Post a case's request and check every expectation it states (the one runner of both case suites)."""
    from support.cds_checker import check_cards_response, errors_only

    service, body = build_request(case)
    response = client.post(f"/cds-services/{service}", json=body)
    expect = case["expect"]
    assert response.status_code == expect.get("status", 200), response.get_json()
    if response.status_code != 200:
        return
    cards = response.get_json()["cards"]
    assert errors_only(check_cards_response(response.get_json(), require_uuids=True)) == []
    if "no_cards_reason" in expect:
        assert cards == [], f"{name}: no card expected ({expect['no_cards_reason']}); got {card_indicators(cards)}"
    fired = fired_rules(cards)
    missing = set(expect.get("fire", [])) - fired
    assert not missing, f"{name}: expected rules did not fire: {sorted(missing)}; fired {sorted(fired)}"
    unexpected = set(expect.get("not_fire", [])) & fired
    assert not unexpected, f"{name}: rules fired that must not: {sorted(unexpected)}; fired {sorted(fired)}"
    indicators = card_indicators(cards)
    for group, indicator in expect.get("cards", {}).items():
        assert indicators.get(group) == indicator, f"{name}: card {group}: {indicators}"
    if "first_card" in expect:
        assert cards and cards[0]["extension"]["org.spinecds.trace"]["card"] == expect["first_card"], indicators
    for group in expect.get("absent_cards", []):
        assert group not in indicators, f"{name}: card {group} must not be shown"
    for group, actions in expect.get("draft_actions", {}).items():
        assert draft_actions(cards, group) == sorted(actions), f"{name}: actions on the draft in card {group}"
    for group, text in expect.get("says", {}).items():
        assert text in card_text(cards, group), f"{name}: card {group} does not say {text!r}"
    for group, text in expect.get("does_not_say", {}).items():
        assert text not in card_text(cards, group), f"{name}: card {group} must not say {text!r}"


def card_text(cards: Iterable[dict[str, Any]], group: str) -> str:
    """What a clinician reads for a card group: the summary and detail of the cards that show it (a group folded
    into another decision's card is read in that card's detail). Tells apart branches that share a rule ID."""
    return "\n\n".join(f"{c['summary']}\n\n{c.get('detail', '')}" for c in cards if group in card_groups(c))


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
