"""The rule catalogue as data (ID, what it needs, what it concludes, sources, thresholds in force).

``rule_reference`` is one rule's entry as ``GET /rules`` answers it (ops blueprint); ``rule_catalogue``
adds each variant's condition, needs and conclusion for ``spinecds rules`` and the console.
"""

from __future__ import annotations

from typing import Any

from .reference import describe_condition
from .ruleset import Rule, RuleBase


def rule_reference(rules: list[Rule]) -> dict[str, Any]:
    """One rule (all its variants) as ``GET /rules`` lists it."""
    lead = rules[0]
    return {
        "id": lead.id,
        "title": lead.title,
        "catalogue": [r.catalogue for r in rules if r.catalogue],
        "sources": sorted({s for r in rules for s in r.sources}),
        "derives": sorted({r.derive[0] for r in rules if r.derive}),
        "concludes": sorted({r.conclude["type"] for r in rules if r.conclude}),
        "thresholds": sorted({t for r in rules for t in r.thresholds}),
        "file": lead.file,
    }


def rule_catalogue(base: RuleBase) -> dict[str, Any]:
    rules = []
    for rule_id in base.rule_ids:
        variants = base.by_id(rule_id)
        entry = rule_reference(variants)
        entry["variants"] = [
            {
                "title": r.title,
                "catalogue": r.catalogue,
                "condition": describe_condition(r, base),
                "needsFacts": sorted(r.reads_facts),
                "needsDerived": sorted(r.reads_derived),
                "derives": f"{r.derive[0]} = {r.derive[1]}" if r.derive else None,
                "concludes": _conclusion(r.conclude, base),
            }
            for r in variants
        ]
        entry["needs"] = sorted({f for r in variants for f in r.reads_facts | r.reads_derived})
        entry["thresholdsInForce"] = [_threshold(base, name) for name in entry["thresholds"]]
        rules.append(entry)
    facts = {
        fid: {
            "type": f.type,
            "values": f.values,
            "unit": f.unit,
            "per": f.per,
            "meaning": f.meaning,
            "window": f.window,
        }
        for fid, f in sorted(base.facts.items())
    }
    return {"ruleBase": base.digest, "rules": rules, "facts": facts}


def _conclusion(conclude: dict[str, Any] | None, base: RuleBase) -> dict[str, Any] | None:
    if not conclude:
        return None
    return {
        "type": conclude.get("type"),
        "card": conclude.get("card"),
        "indicator": conclude.get("indicator"),
        "summary": conclude.get("summary"),
        "text": conclude.get("text"),
        "suggestions": [base.suggestions[s]["label"] for s in conclude.get("suggestions", [])]
        + [base.draft_suggestions[s]["label"] for s in conclude.get("draft_suggestions", [])],
    }


def _threshold(base: RuleBase, name: str) -> dict[str, Any]:
    spec = base.thresholds.get(name, {})
    return {
        "name": name,
        "value": spec.get("value"),
        "unit": spec.get("unit", ""),
        "basis": spec.get("basis", ""),
        "localDefault": bool(spec.get("local_default", True)),
    }
