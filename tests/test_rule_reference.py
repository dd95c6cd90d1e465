"""The rule reference in docs/ is generated from the rule sets, and the rule sets cover the catalogue."""

from __future__ import annotations

import re

from conftest import ROOT, SHARED

from service.engine.reference import describe_condition, render_fact_sources, render_markdown
from service.engine.ruleset import load_rulebase

CATALOGUE = SHARED / "clinical" / "RULE-CATALOGUE.md"
# PRG-02 (Tomita): the catalogue says "do not compute until point values verified";
# issue 3 lists every other rule.
NOT_IMPLEMENTED = {"PRG-02"}


def test_committed_rule_reference_is_current() -> None:
    generated = render_markdown(load_rulebase(ROOT / "rules"))
    committed = (ROOT / "docs" / "rule-reference.md").read_text(encoding="utf-8")
    assert committed == generated, "regenerate: python -m service.engine.reference > docs/rule-reference.md"


def test_committed_fact_sources_are_current() -> None:
    generated = render_fact_sources(load_rulebase(ROOT / "rules"), ROOT / "fhir_profiles")
    committed = (ROOT / "docs" / "fact-sources.md").read_text(encoding="utf-8")
    assert committed == generated, (
        "regenerate: python -m service.engine.reference --fact-sources > docs/fact-sources.md"
    )


def test_the_reference_shows_the_words_a_clinician_reviews() -> None:
    base = load_rulebase(ROOT / "rules")
    text = render_markdown(base)
    for rule in base.rules:
        if rule.conclude:
            assert rule.conclude["text"].replace("|", "\\|") in text, rule.id
            for name in rule.conclude.get("suggestions", []):
                assert base.suggestions[name]["label"] in text, (rule.id, name)
    glossary = text.split("## Fact glossary", 1)[1].split("## Derived facts", 1)[0]
    for fid, fact in base.facts.items():
        row = next(line for line in glossary.splitlines() if line.startswith(f"| {fid} |"))
        assert fact.meaning in row and (fact.window is None or fact.window in row), fid
    assert "| F-PRIM | enum: sensitive, resistant, intermediate |" in glossary
    assert "VS primary-cancer" in glossary


def test_fact_sources_table_names_standard_codes_and_local_fallbacks() -> None:
    table = render_fact_sources(load_rulebase(ROOT / "rules"), ROOT / "fhir_profiles")
    rows = {line.split(" | ")[0].removeprefix("| "): line for line in table.splitlines() if line.startswith("| F-")}
    assert "lab-platelets: LOINC" in rows["F-PLT"] and "`lab.window_days`" in rows["F-PLT"]
    assert "escc-grade" in rows["F-ESCC"].split(" | ")[3]  # local fallback column: no standard ESCC code
    assert "false if meds obtained, else unknown" in rows["F-ANTICOAG"]


def test_every_catalogue_rule_is_implemented() -> None:
    table_ids = set(re.findall(r"^\| ((?:VA|MD|RT|NEU|SUP|PRG)-\d+) \|", CATALOGUE.read_text(encoding="utf-8"), re.M))
    assert len(table_ids) == 83
    implemented = set(load_rulebase(ROOT / "rules").rule_ids)
    assert table_ids - implemented == NOT_IMPLEMENTED
    assert not NOT_IMPLEMENTED & implemented


def test_condition_text_names_thresholds_with_values() -> None:
    base = load_rulebase(ROOT / "rules", {"pain.moderate": 5})
    (sup04,) = base.by_id("SUP-04")
    assert describe_condition(sup04, base) == "F-SCOPE = adult-cancer ∧ F-PAIN ≥ pain.moderate (5) ∧ F-ANALG-STEP = 3"
