"""The durable-rules engine: isolation, concurrency, order independence, state cleanup."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from service.config import REPO_ROOT
from service.engine.ruleset import load_rulebase
from service.engine.runtime import Evaluation, RuleEngine
from service.facts.model import Fact, known, unknown


@pytest.fixture(scope="module")
def engine() -> RuleEngine:
    return RuleEngine(load_rulebase(REPO_ROOT / "rules"))


def patient(pain: int, *, midline: bool | None = True, infection: bool = False) -> list[Fact]:
    """Flat facts for a T12 acute fracture patient; values vary per request."""
    facts = [
        known("F-VCF", True, ["Condition/vcf"], level="T12"),
        known("F-ACUTE", "acute", ["Observation/stir"], level="T12"),
        known("F-PAIN", pain, ["Observation/pain"]),
        known("F-ANALG-STEP", 3, ["MedicationRequest/oxy"]),
        known("F-INFECT", infection),
        known("F-SCC-SYMPT", False),
        known("F-NEURO-DEFICIT", False),
        known("F-ALLERGY-PMMA", False),
        known("F-ALLERGY-CONTRAST", False),
        known("F-COAG-DX", False),
        known("F-ANTICOAG", False),
        known("F-PLT", 180),
        known("F-INR", 1.1),
        known("F-MET", True, ["Condition/met"]),
        known("F-SCOPE", "adult-cancer", ["Patient/p"]),
        known("F-NEURO-DEFICIT-NEW", False),
    ]
    facts.append(known("F-PAIN-MIDLINE", midline) if midline is not None else unknown("F-PAIN-MIDLINE", "exam"))
    return facts


def outcome(ev: Evaluation) -> tuple[Any, ...]:
    return (
        tuple(sorted((k, v.value) for k, v in ev.derived.items())),
        tuple(sorted(f.rule.id for f in ev.conclusions)),
    )


def expected_rules(pain: int, infection: bool) -> set[str]:
    rules = {"RT-01"} if pain >= 1 else set()
    if infection:
        rules.add("VA-07")
        if pain >= 4:
            rules.add("VA-25")
    elif pain >= 4:
        rules.add("VA-22")
        rules.add("SUP-11")  # two local options: augmentation (VA-22) and radiotherapy (RT-01)
    if pain >= 4:
        rules.add("SUP-04")  # moderate pain on a step-3 opioid
    if pain == 0:
        rules.add("VA-05")
    return rules


def test_known_chain(engine: RuleEngine) -> None:
    ev = engine.evaluate(patient(8))
    assert ev.derived["D-VA-INDICATION"].value == "met"
    assert {f.rule.id for f in ev.conclusions} == {"VA-22", "RT-01", "SUP-04", "SUP-11"}
    va22 = next(f for f in ev.conclusions if f.rule.id == "VA-22")
    assert {"VA-01", "VA-03", "VA-04", "SUP-04"} <= set(va22.rule_ids())
    mdt = next(f for f in ev.conclusions if f.rule.id == "SUP-11")
    assert {"VA-22", "RT-01"} <= set(mdt.rule_ids())


def test_unknown_midline_is_pending_never_eligible(engine: RuleEngine) -> None:
    ev = engine.evaluate(patient(8, midline=None))
    assert ev.derived["D-VA-INDICATION"].value == "met-pending-exam"
    rules = {f.rule.id for f in ev.conclusions}
    assert "VA-22" not in rules and "VA-24" in rules


def test_unknown_absolute_ci_gives_needs_data(engine: RuleEngine) -> None:
    facts = [f for f in patient(8) if f.fid != "F-INFECT"] + [unknown("F-INFECT", "problem list not available")]
    ev = engine.evaluate(facts)
    assert ev.derived["D-VA-ABS-CI"].value == "unknown"
    rules = {f.rule.id for f in ev.conclusions}
    assert "VA-24" in rules and "VA-22" not in rules


def test_same_facts_in_any_order_same_conclusions(engine: RuleEngine) -> None:
    facts = patient(8, infection=True) + [known("F-VCF", True, level="T11"), unknown("F-ACUTE", "none", level="T11")]
    reference = outcome(engine.evaluate(facts))
    rng = random.Random(7)
    for _ in range(50):
        shuffled = facts[:]
        rng.shuffle(shuffled)
        assert outcome(engine.evaluate(shuffled)) == reference


def test_ten_thousand_sequential_evaluations_are_isolated(engine: RuleEngine) -> None:
    """More than 1,024 evaluations also proves every state is deleted (else MemoryError at #1025)."""
    for i in range(10_000):
        pain, infection = i % 10, i % 7 == 0
        ev = engine.evaluate(patient(pain, infection=infection))
        assert {f.rule.id for f in ev.conclusions} == expected_rules(pain, infection), i


def test_eight_threads_concurrent_evaluations_are_correct(engine: RuleEngine) -> None:
    def work(i: int) -> tuple[int, set[str]]:
        pain, infection = i % 10, i % 3 == 0
        return i, {f.rule.id for f in engine.evaluate(patient(pain, infection=infection)).conclusions}

    with ThreadPoolExecutor(max_workers=8) as pool:
        for i, rules in pool.map(work, range(4_000)):
            assert rules == expected_rules(i % 10, i % 3 == 0), i


def test_a_duplicated_fact_list_is_refused_before_it_explodes(engine: RuleEngine) -> None:
    """k copies of a fact list would make an n-fact rule fire k**n times (x32: 1.1 million firings, 50 s)."""
    from service.engine.runtime import FactSetError

    facts = patient(8)
    assert engine.evaluate(facts).conclusions  # the single list is evaluated
    for copies in (2, 32):
        with pytest.raises(FactSetError, match="asserted more than once"):
            engine.evaluate(facts * copies)
    # the same fact at two levels is two facts, not a duplicate
    two_levels = facts + [known("F-VCF", True, ["Condition/vcf2"], level="L1")]
    assert engine.evaluate(two_levels).conclusions
