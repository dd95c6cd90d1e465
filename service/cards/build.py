"""Conclusions -> CDS Hooks cards: one card per decision, the right one first.

Firings are grouped by card group (``rules/cards.yaml`` ``cards``); each group belongs to a
decision (``decisions``), and a decision is what a clinician sees: the emergency, vertebral
augmentation, radiotherapy, spine stability and surgery, supportive care when it has no host
card to join, and every missing item in one "what to document next" card ordered by how many
decisions it unblocks. Cards are ordered by clinical priority (critical first, then the
decisions in the order of ``decisions``, the asks last), and a referral to one specialty is
offered once per response.

Summary and detail are written for a clinician: what was found (values, units, dates, levels),
what to do, thresholds as numbers; the rule IDs in one "Rules:" line. Everything a machine
reads (rule IDs, fact IDs and values, FHIR references, threshold names) is in the
``org.spinecds.trace`` extension: ``card`` (the group that gave the summary), ``decision``,
``groups`` (each group shown on the card with its indicator), ``rules``, ``facts``,
``thresholds``, ``suppressed``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from service.engine.ruleset import INDICATORS, RuleBase
from service.engine.runtime import Evaluation, Firing
from service.facts.model import Fact

from .drafts import DraftOrders, draft_suggestions, medication_proposal
from .links import missing_item_asks, record_missing_items_link

TRACE_KEY = "org.spinecds.trace"
OVERRIDE_SYSTEM = "https://fhir.spinecds.org/CodeSystem/override-reason"
NEEDS_DATA = "NEEDS_DATA"
_PLACEHOLDER = re.compile(r"\{([a-z_]+(?:\.[a-z_]+)+)\}")


@dataclass(frozen=True)
class CardContext:
    patient_id: str | None
    public_base_url: str
    drafts: DraftOrders | None = None
    data_gaps: Sequence[str] = ()  # intake problems in words ("2 Conditions could not be read: ...")
    gap_trace: Sequence[Mapping[str, Any]] = ()  # the same as counts per prefetch key


@dataclass
class _Plan:
    """What one card shows: its own groups' firings and the groups folded into it."""

    decision: str
    own: dict[str, list[Firing]] = field(default_factory=dict)
    folded: dict[str, list[Firing]] = field(default_factory=dict)

    def firings(self) -> list[Firing]:
        return [f for fs in (*self.own.values(), *self.folded.values()) for f in fs]


def build_cards(evaluation: Evaluation, base: RuleBase, ctx: CardContext) -> list[dict[str, Any]]:
    fired = {f.rule.id for f in evaluation.conclusions}
    withheld = {rid: by for by in sorted(fired) for rid in base.withhold.get(by, []) if rid in fired}
    groups: dict[str, list[Firing]] = {}
    for firing in evaluation.conclusions:
        assert firing.rule.conclude is not None
        if firing.rule.id not in withheld:
            groups.setdefault(firing.rule.conclude["card"], []).append(firing)
    suppressed: dict[str, list[Firing]] = {}
    for name in list(groups):
        for target in base.cards[name].get("suppresses", []):
            if target in groups and target != name:
                suppressed[target] = groups.pop(target)
    kinds = ctx.drafts.kinds() if ctx.drafts is not None else None
    if kinds is not None:  # an order hook: only the groups that speak to the drafts under review
        groups = {name: fs for name, fs in groups.items() if kinds & set(base.cards[name].get("orders", []))}
    plans = _plans(groups, base)
    patient = {f.fid: f for f in evaluation.facts if f.level == "*"}
    emergency = _emergency(base, plans)
    cards = [_card(plan, base, ctx, suppressed if plan.decision == emergency else {}, patient) for plan in plans]
    _note_withheld(cards, withheld, base)
    rank = list(base.decisions)
    cards.sort(  # critical first, then the decisions (warnings before info), the asks last
        key=lambda c: (
            bool(base.decisions[_trace(c)["decision"]].get("asks")),
            -INDICATORS.index(c["indicator"]) if c["indicator"] == "critical" else 0,
            -max(INDICATORS.index(i) for g, i in _trace(c)["groups"].items() if g in _trace(c)["own"]),
            rank.index(_trace(c)["decision"]),
        )
    )
    for card in cards:
        del _trace(card)["own"]
    _one_referral_per_specialty(cards, base)
    return cards


def _note_withheld(cards: list[dict[str, Any]], withheld: Mapping[str, str], base: RuleBase) -> None:
    """The card of the withholding rule says what it withheld (detail) and lists the rule IDs (trace)."""
    for card in cards:
        trace = _trace(card)
        mine = sorted(rid for rid, by in withheld.items() if by in trace["rules"])
        if not mine:
            continue
        trace["withheld"] = mine
        titles = "; ".join(_unique(base.by_id(rid)[0].title for rid in mine))
        by = "; ".join(_unique(base.by_id(withheld[rid])[0].title.lower() for rid in mine))
        blocks = card["detail"].split("\n\n")
        blocks.insert(len(blocks) - 1, f"**Not shown ({by}):** {titles}.")
        card["detail"] = "\n\n".join(blocks)


def _trace(card: Mapping[str, Any]) -> dict[str, Any]:
    trace: dict[str, Any] = card["extension"][TRACE_KEY]
    return trace


def _emergency(base: RuleBase, plans: Sequence[_Plan]) -> str | None:
    """The decision whose card carries the suppression note (the group that suppresses others)."""
    for plan in plans:
        if any(base.cards[g].get("suppresses") for g in plan.own):
            return plan.decision
    return None


def _plans(groups: Mapping[str, list[Firing]], base: RuleBase) -> list[_Plan]:
    by_decision: dict[str, _Plan] = {}
    for name, firings in groups.items():
        spec = base.cards[name]
        asks_to = spec.get("needs_data_to")
        for firing in firings:
            assert firing.rule.conclude is not None
            decision = spec["decision"]
            if asks_to and firing.rule.conclude.get("type") == NEEDS_DATA:
                decision = asks_to
            plan = by_decision.setdefault(decision, _Plan(decision))
            plan.own.setdefault(name, []).append(firing)
    for decision in list(by_decision):
        hosts = [h for h in base.decisions[decision].get("fold_into", []) if h in by_decision]
        if hosts:
            guest = by_decision.pop(decision)
            for name, firings in guest.own.items():
                by_decision[hosts[0]].folded.setdefault(name, []).extend(firings)
    return list(by_decision.values())


def _rank(firing: Firing, base: RuleBase) -> tuple[int, int, int]:
    assert firing.rule.conclude is not None
    group = firing.rule.conclude["card"]
    order = base.cards[group].get("order", [])
    severity = INDICATORS.index(firing.rule.conclude["indicator"])
    pos = order.index(firing.rule.id) if firing.rule.id in order else len(order)
    return (-severity, list(base.cards).index(group), pos)


def _card(
    plan: _Plan,
    base: RuleBase,
    ctx: CardContext,
    suppressed: Mapping[str, list[Firing]],
    patient: Mapping[str, Fact],
) -> dict[str, Any]:
    decision = base.decisions[plan.decision]
    asks = bool(decision.get("asks"))
    own = sorted((f for fs in plan.own.values() for f in fs), key=lambda f: _rank(f, base))
    folded = sorted((f for fs in plan.folded.values() for f in fs), key=lambda f: _rank(f, base))
    everything = own + folded
    lead = own[0]
    assert lead.rule.conclude is not None
    lead_group = lead.rule.conclude["card"]
    rule_ids = _unique(rid for f in everything for rid in f.rule_ids())
    facts = _unique_facts(fact for f in everything for fact in f.all_facts())
    thresholds = sorted({t for f in everything for t in f.rule.thresholds})
    suggestions: list[dict[str, Any]] = []
    orders: list[str] = []
    for sid in _unique(s for f in everything for s in (f.rule.conclude or {}).get("suggestions", [])):
        spec = base.suggestions[sid]
        gate = patient.get(spec["unless"]) if spec.get("unless") else None
        if gate is not None:
            facts = _unique_facts([*facts, gate])
        if gate is not None and gate.known and gate.value is True:
            orders.append(f"- Not offered: {spec['label']} ({_clean(gate.note) or 'already documented'}).")
            continue
        suggestion = _suggestion(sid, base, ctx, facts)
        if suggestion is None:
            continue
        suggestions.append(suggestion)
        if spec.get("source"):
            check = ""
            if spec.get("unless") and (gate is None or not gate.known):
                check = f" Check first: {_clean(gate.note) if gate is not None and gate.note else 'not documented'}."
            orders.append(f"- {spec['label']}: {_link(spec['source'])}.{check}")
    if ctx.drafts is not None:
        for sid in _unique(s for f in everything for s in (f.rule.conclude or {}).get("draft_suggestions", [])):
            suggestions += draft_suggestions(base.draft_suggestions[sid], ctx.drafts)
    indicator = INDICATORS[max(INDICATORS.index((f.rule.conclude or {})["indicator"]) for f in everything)]
    if asks:
        items = _ask_items(own, base)
        summary = _asks_summary(items)
        detail = _asks_detail(items, facts, folded, base, everything)
    else:
        summary = fill_thresholds(lead.rule.conclude["summary"], base)
        detail = _detail(own, folded, facts, thresholds, base, suppressed, everything, orders)
    source = dict(base.cards[lead_group]["source"])
    card: dict[str, Any] = {
        "uuid": str(uuid.uuid4()),
        "summary": _summary(summary),
        "indicator": indicator,
        "source": source,
        "detail": _with_data_gaps(detail, ctx.data_gaps),
        "overrideReasons": [
            {"system": OVERRIDE_SYSTEM, "code": r["code"], "display": r["display"]} for r in base.override_reasons
        ],
        "links": [
            {
                "label": f"Rule {rid}: {base.by_id(rid)[0].title}",
                "url": f"{ctx.public_base_url.rstrip('/')}/rules/{rid}",
                "type": "absolute",
            }
            for rid in _unique(f.rule.id for f in own)[:3]
        ],
    }
    # the "What to document next" card launches the SMART app that records what it asks for
    if asks and (recordable := missing_item_asks(everything)):
        card["links"].append(record_missing_items_link(ctx.public_base_url, recordable))
    if suggestions:
        card["suggestions"] = suggestions
        card["selectionBehavior"] = "any"
    groups: dict[str, str] = {}
    for f in everything:
        c = f.rule.conclude or {}
        prev = groups.get(c["card"], "info")
        groups[c["card"]] = c["indicator"] if INDICATORS.index(c["indicator"]) > INDICATORS.index(prev) else prev
    trace: dict[str, Any] = {
        "card": lead_group,
        "decision": plan.decision,
        "groups": groups,
        "own": set(plan.own),
        "conclusion": lead.rule.conclude["type"],
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


# ---- text -------------------------------------------------------------------------------------


def _with_data_gaps(detail: str, gaps: Sequence[str]) -> str:
    """Every card says what data could not be used (before its closing Rules line)."""
    if not gaps:
        return detail
    block = "**Data that could not be used** (what was read still counts; nothing is assumed absent)\n\n" + "\n".join(
        f"- {gap}" for gap in gaps
    )
    head, sep, last = detail.rpartition("\n\n")
    return f"{head}\n\n{block}\n\n{last}" if sep else f"{detail}\n\n{block}"


def _summary(text: str) -> str:
    return text if len(text) <= 140 else text[:136].rstrip(" ,;:") + "…"


def fill_thresholds(text: str, base: RuleBase) -> str:
    """Threshold placeholders ({coag.inr_max}) become the value in force at this site."""

    def value(m: re.Match[str]) -> str:
        spec = base.thresholds.get(m.group(1))
        return _number(spec["value"]) if spec else m.group(0)

    return _PLACEHOLDER.sub(value, text)


def _number(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3g}" if not value.is_integer() else str(int(value))
    return str(value)


def _text(firing: Firing, base: RuleBase) -> str:
    c = firing.rule.conclude or {}
    return fill_thresholds(str(c.get("text", "")), base)


def _bullets(firings: Iterable[Firing], base: RuleBase, skip: Iterable[str] = ()) -> list[str]:
    seen = set(skip)
    out = []
    for f in firings:
        if f.rule.id in seen:
            continue
        seen.add(f.rule.id)
        out.append(f"- **{f.rule.title}.** {_text(f, base)}")
    return out


def _found(facts: Sequence[Fact]) -> list[str]:
    return _unique(f"- {_clean(f.note)}" for f in facts if f.known and f.note)


def _not_documented(facts: Sequence[Fact]) -> list[str]:
    return _unique(f"- {_clean(f.note) or 'not documented'}" for f in facts if not f.known)


def _clean(note: str) -> str:
    """A fact's note as a clinician reads it (no configuration variable names)."""
    return note.replace("SPINECDS_SPINE_SURGICAL_BACKUP", "spine surgical backup (site setting)")


def _detail(
    own: list[Firing],
    folded: list[Firing],
    facts: list[Fact],
    thresholds: list[str],
    base: RuleBase,
    suppressed: Mapping[str, list[Firing]],
    everything: list[Firing],
    orders: Sequence[str] = (),
) -> str:
    lead = own[0]
    blocks: list[str] = [_text(lead, base)]
    others = _bullets(own, base, skip=[lead.rule.id])
    if others:
        blocks.append("\n".join(others))
    if orders:
        blocks += ["**Orders to place now** (each with its source)", "\n".join(orders)]
    found = _found(facts)
    if found:
        blocks += ["**Found**", "\n".join(found)]
    missing = _not_documented(facts)
    if missing:
        blocks += ["**Not documented** (not documented is not absent; see *What to document next*)", "\n".join(missing)]
    if folded:
        blocks += ["**Also for this patient**", "\n".join(_bullets(folded, base))]
    if suppressed:
        titles = _unique(f.rule.title for fs in suppressed.values() for f in fs)
        blocks.append("**Withheld while this emergency stands:** " + "; ".join(titles) + ".")
    if thresholds:
        blocks += ["**Thresholds used**", "\n".join(_threshold_line(base, t) for t in thresholds)]
    blocks += _sources(everything, base)
    blocks.append(_rules_line(everything))
    return "\n\n".join(blocks)


def _threshold_line(base: RuleBase, name: str) -> str:
    spec = base.thresholds[name]
    origin = "local default" if spec["local_default"] else "site setting"
    label = spec.get("label", "threshold")
    unit = spec.get("unit", "")
    return f"- {label}: {_number(spec['value'])} {unit} ({origin}; basis: {spec.get('basis', '')})".replace("  ", " ")


def _sources(firings: Sequence[Firing], base: RuleBase) -> list[str]:
    """The seed quotes, each cited by its work, then one line naming the other works behind the rules."""
    quotes = _unique((q["seed"], q["text"]) for f in firings for q in (f.rule.conclude or {}).get("quotes", []))
    works = _unique(_reference(base, key) for f in firings for key in f.rule.sources if key in base.references)
    out = []
    if quotes:
        out += ["**Sources**", *(f"> “{text}” — {_reference(base, seed)}" for seed, text in quotes)]
    if works:
        out.append("**Evidence:** " + "; ".join(works) + ".")
    return out


def _link(source: Mapping[str, Any]) -> str:
    return f"[{source['label']}]({source['url']})" if source.get("url") else str(source["label"])


def reference_label(base: RuleBase, key: str) -> str:
    """A cited work (a seed by file name) as its bibliographic reference, without the link."""
    ref = base.references.get(key)
    return str(ref["label"]) if ref is not None else key


def _reference(base: RuleBase, key: str) -> str:
    ref = base.references.get(key)
    if ref is None:
        return key
    label = str(ref["label"])
    return f"[{label}]({ref['url']})" if ref.get("url") else label


def _rules_line(firings: Sequence[Firing]) -> str:
    ids = _unique(f.rule.id for f in firings)
    return f"Rules: {', '.join(ids)}. Decision support only; clinical judgement applies."


# ---- the "what to document next" card ------------------------------------------------------------


@dataclass
class _Ask:
    firing: Firing
    unblocks: list[str]


def _ask_items(firings: list[Firing], base: RuleBase) -> list[_Ask]:
    """One item per asking rule, ordered by how many decisions its missing facts feed."""
    items: dict[str, _Ask] = {}
    for f in firings:
        if f.rule.id in items:
            continue
        unknown = {fact.fid for fact in f.all_facts() if not fact.known}
        unblocks = _decisions_fed_by(unknown, base)
        c = f.rule.conclude or {}
        own = base.cards[c["card"]].get("decision")
        spec = base.decisions.get(own or "", {})
        if own and not spec.get("asks") and not spec.get("fold_into") and own not in unblocks:
            unblocks.append(own)
        items[f.rule.id] = _Ask(f, unblocks)
    order = list(base.decisions)
    for item in items.values():
        item.unblocks.sort(key=order.index)
    return sorted(
        items.values(),
        key=lambda a: (-len(a.unblocks), -INDICATORS.index((a.firing.rule.conclude or {})["indicator"])),
    )


def _decisions_fed_by(fact_ids: set[str], base: RuleBase) -> list[str]:
    """Decisions of every conclusion reading these facts, directly or through derived facts, in the order of
    ``decisions``. What a set of facts reaches is what each of them reaches, so each fact's decisions are found
    once per rule base (``RuleBase.memo``) and joined."""
    feeds: dict[str, frozenset[str]] = base.memo.setdefault("decisions_fed_by_fact", {})
    found: set[str] = set()
    for fid in fact_ids:
        if fid not in feeds:
            feeds[fid] = frozenset(_decisions_reading({fid}, base))
        found |= feeds[fid]
    return sorted(found, key=list(base.decisions).index)


def _decisions_reading(fact_ids: set[str], base: RuleBase) -> list[str]:
    reading = set(fact_ids)
    decisions: list[str] = []
    for _ in range(base.strata + 1):  # derived facts feed later strata; bounded
        grew = False
        for rule in base.rules:
            if not (rule.reads_facts & reading or rule.reads_derived & reading):
                continue
            if rule.derive and rule.derive[0] not in reading:
                reading.add(rule.derive[0])
                grew = True
            if rule.conclude and rule.conclude.get("type") != NEEDS_DATA:
                d = base.cards[rule.conclude["card"]].get("decision")
                spec = base.decisions.get(d or "", {})
                if d and not spec.get("asks") and not spec.get("fold_into") and d not in decisions:
                    decisions.append(d)
        if not grew:
            break
    return decisions


def _ask_label(title: str) -> str:
    label = re.sub(r"\s+(missing|unknown|incomplete|not documented)\b.*$", "", title).strip()
    return label[0].lower() + label[1:] if len(label) > 1 and label[1].islower() else label


def _asks_summary(items: Sequence[_Ask]) -> str:
    labels = _unique(_ask_label(a.firing.rule.title) for a in items)
    head = "Document next: "
    shown: list[str] = []
    for label in labels:
        rest = len(labels) - len(shown) - 1
        candidate = ", ".join([*shown, label]) + (f" and {rest} more" if rest else "")
        if len(head) + len(candidate) > 140:
            break
        shown.append(label)
    more = len(labels) - len(shown)
    return head + ", ".join(shown) + (f" and {more} more" if more else "")


def _asks_detail(
    items: Sequence[_Ask], facts: list[Fact], folded: list[Firing], base: RuleBase, everything: list[Firing]
) -> str:
    titles = {d: str(spec.get("title", d)).lower() for d, spec in base.decisions.items()}
    blocks = ["Most useful first: each item says which decisions it unblocks. Not documented is not absent."]
    lines = []
    for n, item in enumerate(items, 1):
        needed = "; ".join(titles[d] for d in item.unblocks)
        c = item.firing.rule.conclude or {}
        head = fill_thresholds(str(c.get("summary", item.firing.rule.title)), base)
        lines.append(f"{n}. **{head}.** {_text(item.firing, base)}" + (f" *Unblocks: {needed}.*" if needed else ""))
    blocks.append("\n".join(lines))
    if folded:
        blocks += ["**Also for this patient**", "\n".join(_bullets(folded, base))]
    blocks += _sources(everything, base)
    blocks.append(_rules_line(everything))
    return "\n\n".join(blocks)


# ---- suggestions -----------------------------------------------------------------------------------


def _one_referral_per_specialty(cards: list[dict[str, Any]], base: RuleBase) -> None:
    """A specialty is offered once per response: on the card whose decision owns it, else the first."""
    tagged = [[(s, s.pop("_specialty", None)) for s in card.get("suggestions", [])] for card in cards]
    keep_on: dict[str, int] = {}
    for i, card in enumerate(cards):
        for _, sp in tagged[i]:
            if sp is not None and (
                sp not in keep_on or (_owns(card, sp, base) and not _owns(cards[keep_on[sp]], sp, base))
            ):
                keep_on[sp] = i
    for i, card in enumerate(cards):
        kept = []
        for s, sp in tagged[i]:
            if sp is None or keep_on.get(sp) == i:
                kept.append(s)
                if sp is not None:
                    keep_on.pop(sp)  # the first of this specialty on its card; later ones are dropped
        if kept:
            card["suggestions"] = kept
        elif "suggestions" in card:
            del card["suggestions"]
            card.pop("selectionBehavior", None)


def _owns(card: Mapping[str, Any], specialty: str, base: RuleBase) -> bool:
    return specialty in base.decisions[_trace(card)["decision"]].get("specialties", [])


def _threshold_trace(base: RuleBase, name: str) -> dict[str, Any]:
    spec = base.thresholds[name]
    return {"name": name, "value": spec["value"], "localDefault": bool(spec["local_default"])}


def _suggestion(sid: str, base: RuleBase, ctx: CardContext, facts: Sequence[Fact]) -> dict[str, Any] | None:
    spec = base.suggestions[sid]
    reasons = _unique(
        r for f in facts if f.known and f.value is not False for r in f.refs if r.startswith("Condition/")
    )
    resource: dict[str, Any]
    if spec.get("resource") == "MedicationRequest":
        if not ctx.patient_id:
            return None  # a MedicationRequest needs its subject
        source = str(spec.get("source", {}).get("label", ""))
        resource = medication_proposal(spec, ctx.patient_id, reasons, source)
    else:
        code: dict[str, Any] = {"text": spec["code_text"]}
        if "code" in spec:
            code["coding"] = [dict(spec["code"])]
        resource = {
            "resourceType": "ServiceRequest",
            "status": "draft",
            "intent": "proposal",
            "code": code,
            "priority": spec.get("priority", "routine"),
        }
        if ctx.patient_id:
            resource["subject"] = {"reference": f"Patient/{ctx.patient_id}"}
        if reasons:
            resource["reasonReference"] = [{"reference": r} for r in reasons]
        if spec.get("source"):
            resource["note"] = [{"text": f"Source: {spec['source']['label']}"}]
    out: dict[str, Any] = {
        "label": spec["label"],
        "uuid": str(uuid.uuid4()),
        "isRecommended": True,
        "actions": [{"type": "create", "description": spec["label"], "resource": resource}],
    }
    if spec.get("specialty"):
        out["_specialty"] = spec["specialty"]
    return out


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
