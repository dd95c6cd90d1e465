"""Conclusions -> CDS Hooks cards: one card per decision, each explaining itself.

Every card carries a uuid, a summary under 140 characters, its indicator, a source, markdown
detail (conclusion, the facts used with their FHIR references, missing data, thresholds in
force and whether they are local defaults, and the verbatim seed quotes), suggestions as draft
FHIR ServiceRequests with selectionBehavior, override reasons, links, and the
``org.spinecds.trace`` extension listing every contributing rule ID and fact.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from service.engine.ruleset import INDICATORS, RuleBase
from service.engine.runtime import Evaluation, Firing
from service.facts.model import Fact

from .drafts import DraftOrders, draft_suggestions

TRACE_KEY = "org.spinecds.trace"
OVERRIDE_SYSTEM = "https://fhir.spinecds.org/CodeSystem/override-reason"
SEEDS_URL = "https://github.com/spinecds/spinecds/tree/main/docs/sources"


@dataclass(frozen=True)
class CardContext:
    patient_id: str | None
    public_base_url: str
    drafts: DraftOrders | None = None
    data_gaps: Sequence[str] = ()  # intake problems in words ("2 Conditions could not be read: ...")
    gap_trace: Sequence[Mapping[str, Any]] = ()  # the same as counts per prefetch key


def build_cards(evaluation: Evaluation, base: RuleBase, ctx: CardContext) -> list[dict[str, Any]]:
    groups: dict[str, list[Firing]] = {}
    for firing in evaluation.conclusions:
        assert firing.rule.conclude is not None
        groups.setdefault(firing.rule.conclude["card"], []).append(firing)
    suppressed: dict[str, list[Firing]] = {}
    for name in list(groups):
        for target in base.cards[name].get("suppresses", []):
            if target in groups and target != name:
                suppressed[target] = groups.pop(target)
    kinds = ctx.drafts.kinds() if ctx.drafts is not None else None
    if kinds is not None:  # an order hook: only the groups that speak to the drafts under review
        groups = {name: fs for name, fs in groups.items() if kinds & set(base.cards[name].get("orders", []))}
    cards = [
        _card(name, firings, base, ctx, suppressed if base.cards[name].get("suppresses") else {})
        for name, firings in groups.items()
    ]
    cards.sort(key=lambda c: (-INDICATORS.index(c["indicator"]), c["summary"]))
    return cards


def _rank(firing: Firing, order: list[str]) -> tuple[int, int]:
    assert firing.rule.conclude is not None
    severity = INDICATORS.index(firing.rule.conclude["indicator"])
    pos = order.index(firing.rule.id) if firing.rule.id in order else len(order)
    return (-severity, pos)


def _card(
    name: str, firings: list[Firing], base: RuleBase, ctx: CardContext, suppressed: Mapping[str, list[Firing]]
) -> dict[str, Any]:
    group = base.cards[name]
    firings = sorted(firings, key=lambda f: _rank(f, group.get("order", [])))
    lead = firings[0]
    assert lead.rule.conclude is not None
    conclusion = lead.rule.conclude
    rule_ids = _unique(rid for f in firings for rid in f.rule_ids())
    facts = _unique_facts(fact for f in firings for fact in f.all_facts())
    thresholds = sorted({t for f in firings for t in f.rule.thresholds})
    card: dict[str, Any] = {
        "uuid": str(uuid.uuid4()),
        "summary": _summary(conclusion["summary"]),
        "indicator": conclusion["indicator"],
        "source": dict(group["source"]),
        "detail": _detail(firings, facts, thresholds, base, suppressed, ctx.data_gaps),
        "overrideReasons": [
            {"system": OVERRIDE_SYSTEM, "code": r["code"], "display": r["display"]} for r in base.override_reasons
        ],
        "links": [
            {
                "label": f"Rule {rid} in the spinecds rule reference",
                "url": f"{ctx.public_base_url.rstrip('/')}/rules/{rid}",
                "type": "absolute",
            }
            for rid in _unique(f.rule.id for f in firings)
        ],
    }
    suggestions = [
        _suggestion(sid, base, ctx, facts)
        for sid in _unique(s for f in firings for s in (f.rule.conclude or {}).get("suggestions", []))
    ]
    if ctx.drafts is not None:
        for sid in _unique(s for f in firings for s in (f.rule.conclude or {}).get("draft_suggestions", [])):
            suggestions += draft_suggestions(base.draft_suggestions[sid], ctx.drafts)
    if suggestions:
        card["suggestions"] = suggestions
        card["selectionBehavior"] = "any"
    trace: dict[str, Any] = {
        "card": name,
        "conclusion": conclusion["type"],
        "rules": rule_ids,
        "facts": [f.trace() for f in facts],
        "thresholds": [_threshold_trace(base, t) for t in thresholds],
        "ruleBase": base.digest,
    }
    if suppressed:
        trace["suppressed"] = sorted({f.rule.id for fs in suppressed.values() for f in fs})
    if not trace["thresholds"]:
        del trace["thresholds"]
    if ctx.gap_trace:
        trace["dataGaps"] = [dict(g) for g in ctx.gap_trace]
    card["extension"] = {TRACE_KEY: trace}
    return card


def _summary(text: str) -> str:
    return text if len(text) < 140 else text[:136].rstrip() + "..."


def _detail(
    firings: list[Firing],
    facts: list[Fact],
    thresholds: list[str],
    base: RuleBase,
    suppressed: Mapping[str, list[Firing]],
    data_gaps: Sequence[str] = (),
) -> str:
    lines: list[str] = []
    for f in firings:
        c = f.rule.conclude or {}
        lines.append(
            f"**{f.rule.id} – {f.rule.title}** ({c.get('type', '').replace('_', ' ').lower()}): {c.get('text', '')}"
        )
    lines.append("")
    lines.append("**Why** (facts used)")
    for fact in facts:
        if fact.known:
            lines.append(
                f"- {fact.fid}{_lvl(fact)} = {_fmt(fact.value)}{_refs(fact)}{' — ' + fact.note if fact.note else ''}"
            )
    missing = [f for f in facts if not f.known]
    if missing:
        lines.append("")
        lines.append("**Missing data** (not documented is not absent)")
        for fact in missing:
            lines.append(f"- {fact.fid}{_lvl(fact)}: unknown — {fact.note or 'not documented'}{_refs(fact)}")
    if data_gaps:
        lines.append("")
        lines.append("**Data that could not be used** (what was read still counts; nothing is assumed absent)")
        lines += [f"- {gap}" for gap in data_gaps]
    if thresholds:
        lines.append("")
        lines.append("**Thresholds used**")
        for name in thresholds:
            spec = base.thresholds[name]
            origin = "local default" if spec["local_default"] else "site setting"
            lines.append(
                f"- {name} = {spec['value']:g} {spec.get('unit', '')} ({origin}; basis: {spec.get('basis', '')})"
            )
    if suppressed:
        lines.append("")
        lines.append(
            "**Withheld while this emergency stands**: "
            + ", ".join(sorted({f.rule.id for fs in suppressed.values() for f in fs}))
        )
    quotes = _unique((q["seed"], q["text"]) for f in firings for q in (f.rule.conclude or {}).get("quotes", []))
    if quotes:
        lines.append("")
        lines.append("**Sources**")
        for seed, text in quotes:
            lines.append(f"> “{text}” — seed `{seed}`")
            lines.append("")
    sources = _unique(s for f in firings for s in f.rule.sources)
    lines.append(f"Catalogue sources: {', '.join(sources)}. Decision support only; clinical judgement applies.")
    return "\n".join(lines).strip()


def _lvl(fact: Fact) -> str:
    return "" if fact.level == "*" else f"({fact.level})"


def _refs(fact: Fact) -> str:
    return f" [{', '.join(fact.refs)}]" if fact.refs else ""


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _threshold_trace(base: RuleBase, name: str) -> dict[str, Any]:
    spec = base.thresholds[name]
    return {"name": name, "value": spec["value"], "localDefault": bool(spec["local_default"])}


def _suggestion(sid: str, base: RuleBase, ctx: CardContext, facts: Sequence[Fact]) -> dict[str, Any]:
    spec = base.suggestions[sid]
    code: dict[str, Any] = {"text": spec["code_text"]}
    if "code" in spec:
        code["coding"] = [dict(spec["code"])]
    resource: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "status": "draft",
        "intent": "proposal",
        "code": code,
        "priority": spec.get("priority", "routine"),
    }
    if ctx.patient_id:
        resource["subject"] = {"reference": f"Patient/{ctx.patient_id}"}
    reasons = _unique(
        r for f in facts if f.known and f.value is not False for r in f.refs if r.startswith("Condition/")
    )
    if reasons:
        resource["reasonReference"] = [{"reference": r} for r in reasons]
    return {
        "label": spec["label"],
        "uuid": str(uuid.uuid4()),
        "isRecommended": True,
        "actions": [{"type": "create", "description": spec["label"], "resource": resource}],
    }


def _unique(items: Any) -> list[Any]:
    seen: dict[Any, None] = {}
    for item in items:
        seen.setdefault(item, None)
    return list(seen)


def _unique_facts(facts: Any) -> list[Fact]:
    seen: dict[tuple[str, str], Fact] = {}
    for fact in facts:
        seen.setdefault((fact.fid, fact.level), fact)
    return sorted(seen.values(), key=lambda f: (f.fid, f.level))
