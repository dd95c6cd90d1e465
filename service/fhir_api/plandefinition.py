"""The loaded rule base published as one FHIR R4 PlanDefinition (type eca-rule) per CDS service.

One action per rule ID (rules that share an ID, e.g. the two VA-04 variants, become one action with
one applicability condition each). Which rules belong to which service is derived, not listed:

* *order facts* are the facts the extractor reads from ``context.draftOrders`` (the ``draft_orders``
  extractor);
* a rule is *order-dependent* when every branch of every variant needs a draft order (an order fact
  true, directly or through a derived fact only order-dependent rules derive): it cannot fire
  without one;
* patient-view (no draft orders) gets every rule that is not order-dependent (routine and emergency);
* order-select / order-sign get every rule that reads an order fact (MD-09 reads one in both
  directions, so it is in all three) and every rule concluding into a card group shown at order
  hooks (``orders`` in rules/cards.yaml), with the rules those read through derived facts.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from service.cds.definitions import SERVICES, ServiceDefinition
from service.engine.reference import describe_condition
from service.engine.ruleset import Atom, Rule, RuleBase
from service.facts.extract import EXTRACTORS
from service.fhir_api.fhirpath import LANGUAGE, condition_expression

CANONICAL = "https://fhir.spinecds.org/PlanDefinition"
PLAN_TYPE = "http://terminology.hl7.org/CodeSystem/plan-definition-type"
FACTS_INPUT = (
    "%facts: a Parameters resource with one parameter per fact and level (parts level, known, value, source) and "
    "per derived fact (docs/conformance.md)"
)
PRIORITY = {"critical": "stat", "warning": "urgent", "info": "routine"}


def order_facts() -> set[str]:
    return {fid for fid, fn in EXTRACTORS.items() if fn.__name__ == "draft_orders"}


def _needs_order(atom: Atom, facts: set[str], derived: set[str]) -> bool:
    if atom.target in facts and not atom.derived:
        return (atom.op == "is" and atom.operand is True) or (
            atom.op in {"gte", "gt"} and atom.operand not in (0, None)
        )
    return (
        atom.derived and atom.target in derived and atom.op in {"is", "in"} and atom.operand not in ("false", ["false"])
    )


def order_analysis(base: RuleBase) -> tuple[set[str], set[str]]:
    """(rule IDs that can fire only with a draft order, rule IDs that read order facts at all)."""
    facts = order_facts()
    derived: set[str] = set()
    changed = True
    while changed:
        changed = False
        for r in base.rules:
            if (
                r.derive
                and r.derive[0] not in derived
                and all(any(_needs_order(a, facts, derived) for a in branch) for branch in r.branches)
            ):
                derived.add(r.derive[0])
                changed = True
    needs = {
        rid
        for rid in base.rule_ids
        if all(any(_needs_order(a, facts, derived) for a in b) for r in base.by_id(rid) for b in r.branches)
    }
    reads = {r.id for r in base.rules if r.reads_facts & facts or r.reads_derived & derived}
    return needs, reads


def order_dependent(base: RuleBase) -> set[str]:
    """IDs of rules that can fire only with a draft order."""
    return order_analysis(base)[0]


def _prerequisites(base: RuleBase, ids: set[str]) -> set[str]:
    """Rules that derive what the given rules read (transitively)."""
    derivers: dict[str, set[str]] = {}
    for r in base.rules:
        if r.derive:
            derivers.setdefault(r.derive[0], set()).add(r.id)
    out = set(ids)
    frontier = set(ids)
    while frontier:
        reads = {d for r in base.rules if r.id in frontier for d in r.reads_derived}
        frontier = {rid for d in reads for rid in derivers.get(d, set())} - out
        out |= frontier
    return out


def rules_for_hook(base: RuleBase, hook: str) -> list[str]:
    needs, reads = order_analysis(base)
    if hook == "patient-view":
        chosen = {r.id for r in base.rules} - needs
    else:
        # the card groups shown at order hooks (cards.yaml `orders`), the rules reading order facts,
        # and every rule those derive from
        groups = {g for g, spec in base.cards.items() if spec.get("orders")}
        in_groups = {r.id for r in base.rules if r.conclude and r.conclude["card"] in groups}
        chosen = _prerequisites(base, reads | in_groups)
    return [rid for rid in base.rule_ids if rid in chosen]


def _related(rules: Iterable[Rule], base: RuleBase) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()

    def add(item: dict[str, Any]) -> None:
        key = (item["type"], str(item.get("label")) + str(item.get("display")))
        if key not in seen:
            seen.add(key)
            out.append(item)

    for rule in rules:
        for source in rule.sources:
            anchor = source.strip("[]")
            display = f"RULE-CATALOGUE claim {source}" if source.startswith("SC-") else f"Anchor reference {anchor}"
            add({"type": "justification", "label": anchor, "display": display})
        for quote in (rule.conclude or {}).get("quotes", []):
            add(
                {
                    "type": "citation",
                    "label": str(quote.get("seed", "")),
                    "display": str(quote.get("text", "")),
                    "citation": f"Seed document {quote.get('seed')} (project seed corpus), quoted passage",
                }
            )
        card = (rule.conclude or {}).get("card")
        source_doc = base.cards.get(card, {}).get("source") if card else None
        if source_doc:
            add(
                {
                    "type": "documentation",
                    "label": str(source_doc.get("label", "")),
                    "display": str(source_doc.get("label", "")),
                    "url": str(source_doc.get("url", "")),
                }
            )
    return out


def rule_action(rules: list[Rule], base: RuleBase, hook: str) -> dict[str, Any]:
    """One action per rule ID: its variants OR-ed in one FHIRPath condition, triggered by the hook."""
    lead = rules[0]
    readable = " ∨ ".join(f"({describe_condition(r, base)})" for r in rules) if len(rules) > 1 else None
    action: dict[str, Any] = {
        "id": lead.id,
        "title": lead.title,
        "description": "; ".join(dict.fromkeys(r.catalogue or describe_condition(r, base) for r in rules)),
        "trigger": [{"type": "named-event", "name": hook}],
        "condition": [
            {
                "kind": "applicability",
                "expression": {
                    "description": f"{readable or describe_condition(lead, base)} — over {FACTS_INPUT}",
                    "language": LANGUAGE,
                    "expression": condition_expression(rules, base),
                },
            }
        ],
    }
    conclusion = next((r.conclude for r in rules if r.conclude), None)
    derives = sorted({f"{r.derive[0]} = {r.derive[1]}" for r in rules if r.derive})
    if conclusion:
        action["textEquivalent"] = str(conclusion.get("summary", ""))
        action["priority"] = PRIORITY.get(str(conclusion.get("indicator")), "routine")
        action["code"] = [{"text": f"card group {conclusion.get('card')}: {conclusion.get('type')}"}]
    # R4 PlanDefinition.action.documentation is the action's RelatedArtifact list
    documentation = _related(rules, base)
    if derives:
        documentation.append({"type": "documentation", "display": "derives " + ", ".join(derives)})
    if documentation:
        action["documentation"] = documentation
    return action


def plan_definition(service: ServiceDefinition, base: RuleBase) -> dict[str, Any]:
    actions = [rule_action(base.by_id(rid), base, service.hook) for rid in rules_for_hook(base, service.hook)]
    return {
        "resourceType": "PlanDefinition",
        "id": service.id,
        "url": f"{CANONICAL}/{service.id}",
        "identifier": [{"system": "https://fhir.spinecds.org/rule-base", "value": base.digest}],
        "version": base.digest,
        "name": "".join(part.capitalize() for part in service.id.split("-")),
        "title": service.title,
        "type": {"coding": [{"system": PLAN_TYPE, "code": "eca-rule", "display": "ECA Rule"}]},
        "status": "draft",
        "experimental": True,
        "publisher": "spinecds",
        "description": f"{service.description} Rules of the loaded rule base (digest {base.digest}) that this "
        f"{service.hook} service can fire.",
        "usage": service.usage,
        "relatedArtifact": _related([r for rid in rules_for_hook(base, service.hook) for r in base.by_id(rid)], base),
        "action": actions,
    }


def plan_definitions(base: RuleBase) -> dict[str, dict[str, Any]]:
    return {sid: plan_definition(service, base) for sid, service in SERVICES.items()}
