"""decide's shortcuts (docs/performance.md, round 4) answer exactly as the long way does.

The rule base's memo (rules by id, the decisions each fact feeds), the engine's fact serialisation and match
order, and the extractor's per-request Condition lists.
"""

from __future__ import annotations

import json
import random
from itertools import permutations
from typing import Any

import pytest
from conftest import CASE_NOW
from test_readable import BASE, CASES, THRESHOLDS, VOCAB

from service.cards.build import _decisions_fed_by, _decisions_reading
from service.cds.definitions import CATEGORIES
from service.engine.runtime import RuleEngine, _in_key_order, _json
from service.facts.extract import ExtractionInput, conditions_in, skeletal_conditions
from service.facts.model import known


@pytest.fixture(scope="module")
def engine() -> RuleEngine:
    return RuleEngine(BASE)


def test_matches_of_one_rule_are_in_the_order_of_their_content_whatever_order_durable_yields() -> None:
    found = [
        ("0:0:t", {"a": {"t": "f", "fid": "F-VCF", "i": 3}}),
        ("0:0:t", {"a": {"t": "f", "fid": "F-VCF", "i": 1}}),
        ("0:0:t", {"a": {"t": "f", "fid": "F-VCF", "i": 12}}),
        ("1:0:u", {"a": {"t": "f", "fid": "F-PAIN", "i": 0}}),
        ("0:1:t", {"a": {"t": "d", "fid": "D-X", "i": 9}}),
    ]
    expected = sorted(found, key=lambda km: (km[0], json.dumps(km[1], sort_keys=True)))
    for order in permutations(found):
        assert _in_key_order(list(order)) == expected


def test_a_fact_no_fast_encoder_holds_is_still_sent_to_the_engine(engine: RuleEngine) -> None:
    """orjson refuses integers beyond 64 bits (a SINS summed from values near 1e100); such a fact is
    serialised as before, never a failed request."""
    assert json.loads("{" + _json({"t": "f", "v": 10**30})[1:]) == {"t": "f", "v": 10**30}
    facts = [known("F-SINS", 10**30, ["Observation/sins"]), known("F-SCOPE", "adult-cancer", ["Patient/p"])]
    engine.evaluate(facts)


def test_rules_by_id_are_those_of_the_rule_list() -> None:
    for rid in {r.id for r in BASE.rules} | {"VA-999"}:
        found = BASE.by_id(rid)
        assert found == [r for r in BASE.rules if r.id == rid]
        found.clear()  # a caller's list: the memo is not changed
        assert BASE.by_id(rid) == [r for r in BASE.rules if r.id == rid]


def test_decisions_fed_by_facts_are_those_found_by_walking_the_rules() -> None:
    order = list(BASE.decisions)
    fids = sorted({f for r in BASE.rules for f in r.reads_facts})
    rng = random.Random(3)
    sets = [set(rng.sample(fids, rng.randint(2, 6))) for _ in range(150)] + [{f} for f in fids]
    BASE.memo.pop("decisions_fed_by_fact", None)  # the sets of several facts come first to a fresh memo
    for _ in range(2):  # the second round is answered from the memo
        for fact_ids in sets:
            walked = sorted(_decisions_reading(set(fact_ids), BASE), key=order.index)
            assert _decisions_fed_by(set(fact_ids), BASE) == walked, fact_ids
    assert any(len(_decisions_fed_by(s, BASE)) > 1 for s in sets)


def test_condition_lists_are_the_callers_to_change() -> None:
    """conditions_in and skeletal_conditions are read once per request; each call returns a new list."""
    checked = 0
    for case in CASES:
        by_type: dict[str, list[dict[str, Any]]] = {}
        for r in case["resources"]:
            by_type.setdefault(r["resourceType"], []).append(r)
        inp = ExtractionInput(VOCAB, by_type, frozenset(CATEGORIES), THRESHOLDS, CASE_NOW, facts=BASE.facts)
        for read in (lambda: conditions_in(inp, "spinal-metastasis"), lambda: skeletal_conditions(inp)):  # noqa: B023
            if read():
                checked += 1
                for _ in range(2):  # the first list and one from the memo
                    read().clear()
                    assert read()
    assert checked > 20
