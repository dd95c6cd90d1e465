"""The rule reference, generated from the loaded rule sets (never written by hand).

``render_markdown(base)`` gives docs/rule-reference.md; ``describe_condition`` turns a rule's
patterns into the words a clinician reads (also used by the PlanDefinition and the console).
``render_fact_sources(base, profiles_dir)`` gives docs/fact-sources.md: each fact's standard
sources (the ValueSets it reads and what they contain) and its local-code fallback, from
rules/facts.yaml and fhir_profiles/. Regenerate with ``python -m service.engine.reference >
docs/rule-reference.md`` and ``python -m service.engine.reference --fact-sources >
docs/fact-sources.md``; a test fails when either committed file is out of date.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from service.config import REPO_ROOT
from service.conformance.systems import CANONICAL

from .ruleset import NUMERIC, Atom, Rule, RuleBase, load_rulebase
from .schema import FactSpec

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
    out += _fact_glossary(base)
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
        out += _card_words(r, base)
    sources = sorted({s for r in rules for s in r.sources})
    thresholds = sorted({t for r in rules for t in r.thresholds})
    out.append("")
    out.append(f"Sources: {', '.join(sources) or '-'}. Thresholds: {', '.join(thresholds) or 'none'}.")
    out.append(f"File: `rules/{rules[0].file}`.")
    out.append("")
    return out


def _card_words(rule: Rule, base: RuleBase) -> list[str]:
    """The words that reach the EHR: the card's text and each suggestion's label."""
    if not rule.conclude:
        return []
    c = rule.conclude
    group = base.cards.get(c["card"], {})
    out = [f"  - Card *{group.get('title', c['card'])}* ({c['indicator']}): {_cell(c['text'])}"]
    for name in c.get("suggestions", []):
        out.append(f"  - Suggestion: {_cell(base.suggestions[name]['label'])}")
    for name in c.get("draft_suggestions", []):
        out.append(f"  - Suggestion on the draft order: {_cell(base.draft_suggestions[name]['label'])}")
    return out


def _fact_glossary(base: RuleBase) -> list[str]:
    out = [
        "## Fact glossary",
        "",
        "Every fact the rules read, from `rules/facts.yaml`. Codes and local fallbacks per fact:",
        "[fact-sources.md](fact-sources.md).",
        "",
        "| Fact | Type | Per | Meaning | Sources | Window | When absent |",
        "|---|---|---|---|---|---|---|",
    ]
    for fid, f in sorted(base.facts.items()):
        kind = f"{f.type}: {', '.join(f.values)}" if f.values else f.type + (f" ({f.unit})" if f.unit else "")
        out.append(
            f"| {fid} | {_cell(kind)} | {f.per} | {_cell(f.meaning)} | {_cell(_sources(f))} | "
            f"{_cell(_window(base, f))} | {_cell(_absence(f))} |"
        )
    return out + [""]


def _sources(fact: FactSpec) -> str:
    parts = []
    for s in fact.sources:
        codes = [*(f"VS {v}" for v in s.valuesets), *(f"local {c}" for c in s.local_codes)]
        elements = f".{'/'.join(s.elements)}" if s.elements else ""
        parts.append(f"{s.resource}{elements}" + (f" ({', '.join(codes)})" if codes else ""))
    return "; ".join(parts)


def _window(base: RuleBase, fact: FactSpec) -> str:
    """The fact's window and horizon as thresholds: their names and the values in force."""

    def days(name: str) -> str:
        return f"{base.thresholds[name]['value']:g}" if name in base.thresholds else "?"

    parts = [f"`{fact.window}` ({days(fact.window)} days)"] if fact.window else []
    if fact.window_if_false:
        parts.append(f"if false `{fact.window_if_false}` ({days(fact.window_if_false)} days)")
    if fact.horizon:
        low, high = fact.horizon.low, fact.horizon.high
        parts.append(f"horizon {days(low)}-{days(high)} days (`{low}`, `{high}`)")
    return "; ".join(parts) or "-"


def _absence(fact: FactSpec) -> str:
    if fact.closed_world is None:
        return "unknown"
    return f"{_word(fact.closed_world.absent)} if {', '.join(fact.closed_world.lists)} obtained, else unknown"


def render_fact_sources(base: RuleBase, profiles_dir: str | Path) -> str:
    """docs/fact-sources.md: fact -> standard sources (ValueSets and their code systems) -> local fallback."""
    valuesets = {
        p.name.removeprefix("ValueSet-").removesuffix(".json"): json.loads(p.read_text(encoding="utf-8"))
        for p in sorted(Path(profiles_dir).glob("ValueSet-*.json"))
    }
    out = [
        "# Fact sources",
        "",
        "Generated from `rules/facts.yaml` and the ValueSets in `fhir_profiles/` by",
        "`python -m service.engine.reference --fact-sources`; do not edit by hand. For each fact: the",
        "FHIR resources and elements read, the standard codes (ValueSets, by code system), and the",
        "local code used only where no standard code exists. A fact is unknown when its data are",
        "missing, unless *Absent* says which complete lists make absence count.",
        "",
        "| Fact | Resource.elements | Standard sources (ValueSet: code systems) | Local fallback | Window | Absent |",
        "|---|---|---|---|---|---|",
    ]
    for fid, f in sorted(base.facts.items()):
        resources = "; ".join(f"{s.resource}" + (f".{'/'.join(s.elements)}" if s.elements else "") for s in f.sources)
        named = dict.fromkeys(v for s in f.sources for v in s.valuesets)
        standard = "; ".join(_valueset_line(v, valuesets.get(v)) for v in named)
        local = ", ".join(dict.fromkeys(c for s in f.sources for c in s.local_codes))
        out.append(
            f"| {fid} | {_cell(resources)} | {_cell(standard) or '-'} | {_cell(local) or '-'} | "
            f"{_cell(_window(base, f))} | {_cell(_absence(f))} |"
        )
    out += ["", "## Notes", ""]
    for fid, f in sorted(base.facts.items()):
        notes = [s.note for s in f.sources if s.note] + ([f.algorithm] if f.algorithm else [])
        if notes:
            out.append(f"- **{fid}**: {'; '.join(notes)}.")
    return "\n".join(out) + "\n"


def _valueset_line(vs_id: str, vs: dict[str, Any] | None) -> str:
    if vs is None:
        return f"{vs_id} (missing)"
    systems: dict[str, list[str]] = {}
    for inc in (vs.get("compose") or {}).get("include", []):
        system = inc.get("system", "")
        name = CANONICAL.get(system, "local" if "spinecds" in system else system)
        entry = systems.setdefault(name, [])
        entry += [f"is-a {f['value']}" for f in inc.get("filter", [])]
        if inc.get("concept"):
            entry.append(f"{len(inc['concept'])} code{'s' if len(inc['concept']) > 1 else ''}")
    expansion = (vs.get("expansion") or {}).get("contains", [])
    if expansion:
        counted: dict[str, int] = {}
        for c in expansion:
            name = CANONICAL.get(c.get("system", ""), "local")
            counted[name] = counted.get(name, 0) + 1
        for name, n in counted.items():
            systems.setdefault(name, []).append(f"{n} in expansion")
    parts = [f"{name} ({', '.join(detail)})" if detail else name for name, detail in systems.items()]
    return f"{vs_id}: {', '.join(parts)}"


def _word(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    base = load_rulebase(REPO_ROOT / "rules")
    if args == ["--fact-sources"]:
        sys.stdout.write(render_fact_sources(base, REPO_ROOT / "fhir_profiles"))
    else:
        sys.stdout.write(render_markdown(base))


if __name__ == "__main__":
    main()
