"""The rule reference, generated from the loaded rule sets (never written by hand).

``render_markdown(base)`` gives docs/rule-reference.md; ``describe_condition`` turns a rule's
patterns into the words a clinician reads (also used by the PlanDefinition and the console).
Regenerate with ``python -m service.engine.reference > docs/rule-reference.md``; a test fails
when the committed file is out of date.
"""

from __future__ import annotations

import sys
from typing import Any

from service.config import REPO_ROOT

from .ruleset import NUMERIC, Atom, Rule, RuleBase, load_rulebase

SYMBOL = {"gte": "≥", "gt": ">", "lte": "≤", "lt": "<"}
FAMILIES = {
    "VA": "Vertebral augmentation (VA)",
    "MD": "Missing data (MD)",
    "RT": "Palliative radiotherapy (RT)",
    "NEU": "Neurology, stability and surgery (NEU)",
    "SUP": "Supportive care (SUP)",
    "PRG": "Prognosis (PRG)",
}


def describe_atom(atom: Atom, base: RuleBase) -> str:
    name = atom.target
    if atom.same_level:
        name += " (same level)"
    if atom.src:
        name += f" [from {atom.src}]"
    if atom.op == "unknown":
        return f"{name} unknown" if atom.operand else f"{name} known"
    if atom.op == "known":
        return f"{name} known" if atom.operand else f"{name} unknown"
    if atom.op == "is":
        return f"{name} = {_word(atom.operand)}"
    if atom.op == "in":
        return f"{name} ∈ {{{', '.join(_word(v) for v in atom.operand)}}}"
    if atom.op == "not":
        return f"{name} ≠ {_word(atom.operand)}"
    if atom.op in NUMERIC:
        operand = atom.operand
        if isinstance(operand, str):
            value = base.thresholds[operand]["value"]
            return f"{name} {SYMBOL[atom.op]} {operand} ({_number(value)})"
        return f"{name} {SYMBOL[atom.op]} {_number(operand)}"
    raise ValueError(f"unknown comparator {atom.op}")


def describe_condition(rule: Rule, base: RuleBase) -> str:
    branches = [" ∧ ".join(describe_atom(a, base) for a in branch) for branch in rule.branches]
    if len(branches) == 1:
        return branches[0]
    return " ∨ ".join(f"({b})" for b in branches)


def describe_outcome(rule: Rule) -> str:
    parts = []
    if rule.derive:
        parts.append(f"{rule.derive[0]} = {rule.derive[1]}")
    if rule.conclude:
        c = rule.conclude
        parts.append(f"{c['type']} ({c['indicator']}, card {c['card']}): {c['summary']}")
    return "; ".join(parts)


def render_markdown(base: RuleBase) -> str:
    out = [
        "# Rule reference",
        "",
        "Generated from `rules/*.yaml` by `python -m service.engine.reference`; do not edit by hand.",
        f"Rule base digest `{base.digest}` (also in every card's trace as `ruleBase`). Threshold values",
        "shown are the embedded defaults; a site's `SPINECDS_THRESHOLDS_FILE` overrides them and the",
        "cards then say so.",
        "",
    ]
    for prefix, heading in FAMILIES.items():
        ids = [rid for rid in base.rule_ids if rid.split("-")[0] == prefix]
        out += [f"## {heading}", ""]
        for rid in ids:
            out += _rule_section(rid, base.by_id(rid), base)
    others = [rid for rid in base.rule_ids if rid.split("-")[0] not in FAMILIES]
    if others:
        out += ["## Derived-fact definitions", ""]
        for rid in others:
            out += _rule_section(rid, base.by_id(rid), base)
    out += ["## Derived facts", "", "| ID | Values (precedence) | Meaning | Sources |", "|---|---|---|---|"]
    for d in base.derived.values():
        out.append(f"| {d.id} | {', '.join(d.values)} | {_cell(d.description)} | {', '.join(d.sources)} |")
    out += ["", "## Thresholds", "", "| Name | Default | Unit | Basis | Source |", "|---|---|---|---|---|"]
    for name, t in sorted(base.thresholds.items()):
        out.append(
            f"| `{name}` | {_number(t['value'])} | {_cell(str(t.get('unit', '')))} | "
            f"{_cell(str(t.get('basis', '')))} | {_cell(str(t.get('source', '')))} |"
        )
    return "\n".join(out) + "\n"


def _rule_section(rid: str, rules: list[Rule], base: RuleBase) -> list[str]:
    out = [f"### {rid}: {rules[0].title}", ""]
    catalogue = sorted({r.catalogue for r in rules if r.catalogue})
    for text in catalogue:
        out.append(f"Catalogue: {text}")
        out.append("")
    for r in rules:
        title = f" *{r.title}*" if len(rules) > 1 and r.title != rules[0].title else ""
        out.append(f"- **If** {describe_condition(r, base)}{title}")
        out.append(f"  **then** {describe_outcome(r)}")
    sources = sorted({s for r in rules for s in r.sources})
    thresholds = sorted({t for r in rules for t in r.thresholds})
    out.append("")
    out.append(f"Sources: {', '.join(sources) or '-'}. Thresholds: {', '.join(thresholds) or 'none'}.")
    out.append(f"File: `rules/{rules[0].file}`.")
    out.append("")
    return out


def _word(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def main() -> None:
    sys.stdout.write(render_markdown(load_rulebase(REPO_ROOT / "rules")))


if __name__ == "__main__":
    main()
