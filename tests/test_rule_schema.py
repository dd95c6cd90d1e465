"""Rule files cannot load wrong: every mistake is refused at load, with file, line and path, all at once."""

from __future__ import annotations

import io
import re
import shutil
from argparse import Namespace
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import ROOT, SHARED

from service.config import ConfigError
from service.engine.ruleset import RuleBaseError, check_rulebase, load_rulebase
from service.facts.extract import EXTRACTORS

RULES = ROOT / "rules"


def broken(tmp_path: Path, file: str, old: str, new: str) -> Path:
    """A copy of the rule base with one text edit (the edit must apply exactly once)."""
    target = tmp_path / "rules"
    if not target.exists():
        shutil.copytree(RULES, target)
    text = (target / file).read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times in {file}"
    (target / file).write_text(text.replace(old, new), encoding="utf-8")
    return target


def line_of(path: Path, needle: str) -> int:
    lines = path.read_text(encoding="utf-8").splitlines()
    return next(i + 1 for i, line in enumerate(lines) if needle in line)


def test_the_committed_rule_base_has_no_problems() -> None:
    assert check_rulebase(RULES) == []


# (file, old text, new text, what the problem must say: path fragment, message fragment)
BREAKAGES = [
    pytest.param(
        "rules-va.yaml",
        'summary: "Vertebral augmentation not indicated: the fracture is documented as painless"',
        'sumary: "Vertebral augmentation not indicated"',
        "VA-05 rules[4].conclude.sumary",
        "unknown key",
        id="typo-sumary",
    ),
    pytest.param(
        "rules-va.yaml",
        "acuity: {fact: F-ACUTE, in: [acute, subacute], same_level: vcf}",
        "acuity: {fact: F-ACUTE, in: acute, same_level: vcf}",
        "VA-01 rules[0].match.acuity.in",
        "valid list",
        id="in-not-a-list",
    ),
    pytest.param(
        "rules-va.yaml",
        "      mscc: {derived: D-MSCC, is: true}\n    derive: {fact: D-VA-ABS-CI}",
        "      mscc: {derived: D-OPT-RT, is: met}\n    derive: {fact: D-VA-ABS-CI}",
        "VA-06 rules[5].match.mscc.is",
        "D-OPT-RT takes true, false, never 'met'",
        id="derived-value-it-never-takes",
    ),
    pytest.param(
        "rules-va.yaml",
        "pain: {fact: F-PAIN, lte: 0}",
        "pain: {fact: F-PAIN, is: pain.moderate}",
        "VA-05 rules[4].match.pain.is",
        "'pain.moderate' is a threshold",
        id="is-threshold-name",
    ),
    pytest.param(
        "rules-va.yaml",
        "brace: {fact: F-BRACE, is: true}",
        "brace: {fact: F-BRACE, gte: 1}",
        "VA-03 rules[1].match_any[1].brace.gte",
        "F-BRACE is a boolean fact",
        id="gte-on-boolean",
    ),
    pytest.param(
        "rules-va.yaml",
        "    sources: [SC-12]\n",
        "    source: [SC-12]\n",
        "VA-07 rules[6].source",
        "unknown key",
        id="source-not-sources",
    ),
    pytest.param(
        "rules-va.yaml",
        "      type: CONTRAINDICATED_ABSOLUTE\n      card: emergency-mscc",
        "      type: CONTRAINDICATED\n      card: emergency-mscc",
        "VA-06 rules[5].conclude.type",
        "Input should be",
        id="bad-type",
    ),
    pytest.param(
        "rules-va.yaml",
        'summary: "Vertebral augmentation not indicated: the fracture is documented as painless"',
        'summary: "' + "x" * 141 + '"',
        "VA-05 rules[4].conclude.summary",
        "at most 140 characters",
        id="summary-over-140",
    ),
    pytest.param(
        "rules-neu.yaml",
        'escc: {fact: F-ESCC, in: ["2", "3"]}',
        "escc: {fact: F-ESCC, in: [2, 3]}",
        "rules[0].match.escc.in",
        "F-ESCC: takes 0, 1a, 1b, 1c, 2, 3, never 2",
        id="enum-value-not-declared",
    ),
    pytest.param(
        "rules-va.yaml",
        "vcf: {fact: F-VCF, is: true}\n      acuity: {fact: F-ACUTE, in: [acute, subacute], same_level: vcf}",
        "vcf: {fact: F-VCFX, is: true}\n      acuity: {fact: F-ACUTE, in: [acute, subacute], same_level: vcf}",
        "VA-01 rules[0].match.vcf.fact",
        "F-VCFX is not declared in facts.yaml",
        id="unknown-fact",
    ),
    pytest.param(
        "rules-va.yaml",
        "derive: {fact: D-ACUTE-VCF}",
        "derive: {fact: D-ACUTE-VCF, value: maybe}",
        "VA-01 rules[0].derive.value",
        "D-ACUTE-VCF takes true, unknown, not 'maybe'",
        id="derive-undeclared-value",
    ),
    pytest.param(
        "cards.yaml",
        "    title: Vertebral augmentation (vertebroplasty / kyphoplasty)\n",
        "    title: Vertebral augmentation (vertebroplasty / kyphoplasty)\n    colour: red\n",
        "cards.va-eligibility.colour",
        "unknown key",
        id="cards-unknown-key",
    ),
    pytest.param(
        "thresholds.yaml",
        '"moderate pain from", value: 4,',
        '"moderate pain from", value: true,',
        "pain.moderate",
        "a number, not true/false",
        id="threshold-not-a-number",
    ),
    pytest.param(
        "facts.yaml",
        "  F-MET:\n    type: boolean",
        "  F-MET:\n    type: bool",
        "facts.F-MET.type",
        "Input should be",
        id="fact-bad-type",
    ),
    pytest.param(
        "facts.yaml",
        "  F-MET:\n    type: boolean\n",
        "  F-MET:\n    type: boolean\n    window: lab.window_weeks\n",
        "facts.F-MET.window",
        "unknown threshold 'lab.window_weeks'",
        id="fact-window-not-a-threshold",
    ),
    pytest.param(
        "facts.yaml",
        "    window: brace.window_days\n",
        "    window: sbrt.max_ecog\n",
        "facts.F-BRACE.window",
        "threshold 'sbrt.max_ecog' is in 'ECOG', not days",
        id="fact-window-not-in-days",
    ),
    pytest.param(
        "facts.yaml",
        "    horizon: {low: sorg.mortality_90d_low_days,",
        "    horizon: {low: sorg.mortality_90d_from,",
        "facts.F-SORG-MORT-90D.horizon.low",
        "unknown threshold 'sorg.mortality_90d_from'",
        id="fact-horizon-not-a-threshold",
    ),
    pytest.param(
        "cards.yaml",
        "    timing: {frequency: 1, period: 1, periodUnit: d}\n",
        "",
        "suggestions.dexamethasone-mscc",
        "a MedicationRequest suggestion gives medication, dose_mg, dosage_text and timing",
        id="medication-suggestion-without-timing",
    ),
    pytest.param(
        "facts.yaml",
        "    window: brace.window_days\n",
        "",
        "facts.F-BRACE",
        "read from a dated record: declare its window:",
        id="fact-from-a-dated-record-without-window",
    ),
    pytest.param(
        "facts.yaml",
        "    horizon: {low: sorg.mortality_1y_low_days, high: sorg.mortality_1y_high_days}\n",
        "",
        "facts.F-SORG-MORT-1Y",
        "a RiskAssessment prediction declares its horizon:",
        id="prediction-without-horizon",
    ),
    pytest.param(
        "derived.yaml",
        "  - id: D-OPT-RT\n",
        "  - id: D-OPT-RT\n    value: [true]\n",
        "derived[16].value",
        "unknown key",
        id="derived-unknown-key",
    ),
]


@pytest.mark.parametrize(("file", "old", "new", "path", "message"), BREAKAGES)
def test_each_mistake_is_refused_with_file_line_and_path(
    tmp_path: Path, file: str, old: str, new: str, path: str, message: str
) -> None:
    rules = broken(tmp_path, file, old, new)
    with pytest.raises(RuleBaseError) as caught:
        load_rulebase(rules)
    hits = [p for p in caught.value.problems if path in str(p) and message in str(p)]
    assert hits, "\n".join(map(str, caught.value.problems))
    [hit] = hits
    assert hit.file == file
    assert hit.line is not None
    key = str(hit.path[-1])
    line = (rules / file).read_text(encoding="utf-8").splitlines()[hit.line - 1]
    assert key in line or (key == "value" and "derived" in file), (hit, line)
    assert isinstance(caught.value, ConfigError)  # the app factory refuses to start with it


def test_lines_point_at_the_offending_key(tmp_path: Path) -> None:
    rules = broken(tmp_path, "rules-va.yaml", "    sources: [SC-12]\n", "    source: [SC-12]\n")
    missing, problem = check_rulebase(rules)  # sources missing (at the rule), source unknown (at the key)
    assert str(missing).endswith("VA-07 rules[6].sources: Field required")
    assert problem.line == line_of(rules / "rules-va.yaml", "source: [SC-12]")
    assert str(problem).startswith(f"rules-va.yaml:{problem.line}: VA-07 rules[6].source: unknown key")


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    for param in BREAKAGES[:4] + BREAKAGES[11:13]:
        file, old, new = param.values[:3]
        broken(tmp_path, str(file), str(old), str(new))
    problems = check_rulebase(tmp_path / "rules")
    assert {p.file for p in problems} == {"rules-va.yaml", "cards.yaml", "thresholds.yaml"}
    assert len(problems) >= 6, "\n".join(map(str, problems))


def test_facts_declared_are_exactly_the_facts_extracted() -> None:
    declared = set(yaml.safe_load((RULES / "facts.yaml").read_text(encoding="utf-8"))["facts"])
    assert declared == set(EXTRACTORS)


def test_a_fact_the_extractor_does_not_assert_is_refused(tmp_path: Path) -> None:
    rules = broken(tmp_path, "facts.yaml", "  F-MET-LEVELS:\n", "  F-MET-COUNT:\n")
    messages = [str(p) for p in check_rulebase(rules)]
    assert any("F-MET-COUNT" in m and "no extractor asserts it" in m for m in messages), messages
    assert any("F-MET-LEVELS: asserted by the extractor but not declared" in m for m in messages), messages


def test_fact_sources_name_valuesets_codes_and_windows_that_exist() -> None:
    import json

    base = load_rulebase(RULES)
    valuesets = {
        p.name.removeprefix("ValueSet-").removesuffix(".json") for p in (ROOT / "fhir_profiles").glob("ValueSet-*")
    }
    local = json.loads((ROOT / "fhir_profiles" / "CodeSystem-spinecds-local.json").read_text(encoding="utf-8"))
    codes = {c["code"] for c in local["concept"]}
    for fid, fact in base.facts.items():
        for source in fact.sources:
            assert set(source.valuesets) <= valuesets, (fid, source.valuesets)
            assert set(source.local_codes) <= codes, (fid, source.local_codes)


def test_closed_world_lists_are_prefetch_categories() -> None:
    from service.cds.definitions import CATEGORIES
    from service.engine import schema

    assert set(schema.CATEGORIES) == set(CATEGORIES)


def test_rules_check_prints_every_problem_and_exits_non_zero(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from service.batch.commands import run_rules

    rules = broken(tmp_path, "rules-va.yaml", "    sources: [SC-12]\n", "    source: [SC-12]\n")
    broken(
        tmp_path,
        "cards.yaml",
        "    orders: [va]\n    order: [VA-25,",
        "    orders: [va]\n    colour: red\n    order: [VA-25,",
    )
    monkeypatch.setenv("SPINECDS_RULES_DIR", str(rules))
    out, err = io.StringIO(), io.StringIO()
    assert run_rules(Namespace(check=True, json=False), out, err) == 1
    text = out.getvalue()
    assert "rules-va.yaml:" in text and "VA-07 rules[6].source: unknown key" in text
    assert "cards.yaml:" in text and "cards.va-eligibility.colour: unknown key" in text
    monkeypatch.setenv("SPINECDS_RULES_DIR", str(RULES))
    out = io.StringIO()
    assert run_rules(Namespace(check=True, json=False), out, err) == 0
    assert "no problems" in out.getvalue()


def test_the_app_refuses_to_start_with_a_broken_rule_base(tmp_path: Path) -> None:
    from service.app import create_app

    rules = broken(tmp_path, "rules-va.yaml", "    sources: [SC-12]\n", "    source: [SC-12]\n")
    settings: dict[str, Any] = {"rules_dir": str(rules), "database_url": f"sqlite:///{tmp_path / 'db.sqlite'}"}
    with pytest.raises(ConfigError, match=r"rules-va.yaml:\d+: VA-07 rules\[6\].source: unknown key"):
        create_app(settings)


def _letters(text: str) -> str:
    """The text without whitespace and hyphens: the seeds are PDF text, broken across lines ("im-\\naging")."""
    return re.sub(r"[\s\-\u00ad]+", "", text)


def test_every_quote_is_verbatim_in_its_seed() -> None:
    seeds = SHARED / "seeds"
    quotes = [
        (rule.id, quote)
        for rule in load_rulebase(RULES).rules
        if rule.conclude
        for quote in rule.conclude.get("quotes", [])
    ]
    assert len(quotes) >= 61
    texts = {p.name: _letters(p.read_text(encoding="utf-8")) for p in seeds.glob("*.txt")}
    for rule_id, quote in quotes:
        assert quote["seed"] in texts, (rule_id, quote["seed"])
        assert _letters(quote["text"]) in texts[quote["seed"]], (rule_id, quote["text"])


def test_serve_exits_with_a_json_log_line_on_a_broken_rule_base(tmp_path: Path) -> None:
    import json
    import os
    import subprocess
    import sys

    rules = broken(tmp_path, "rules-va.yaml", "    sources: [SC-12]\n", "    source: [SC-12]\n")
    env = {**os.environ, "SPINECDS_RULES_DIR": str(rules), "SPINECDS_DATABASE_URL": f"sqlite:///{tmp_path / 'db'}"}
    done = subprocess.run(
        [sys.executable, "-m", "service.cli", "serve", "--host", "127.0.0.1", "--port", "9", "--workers=1"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    [line] = [json.loads(x) for x in done.stderr.splitlines() if x.startswith("{") and "not starting" in x]
    assert line["level"] == "CRITICAL"
    assert "rules-va.yaml" in line["msg"] and "VA-07 rules[6].source: unknown key" in line["msg"]
