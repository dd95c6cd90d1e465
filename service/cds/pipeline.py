"""One CDS Hooks call: prefetch -> facts -> rules -> cards. Pure of Flask, reused by the CLI."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from service.cards.build import CardContext, build_cards
from service.cards.drafts import DraftOrders
from service.engine.ruleset import RuleBase
from service.engine.runtime import Evaluation, RuleEngine
from service.facts.extract import ExtractionInput, extract_facts
from service.facts.vocabulary import LOCAL_SYSTEM, Vocabulary
from service.fhir import readable
from service.fhir.client import FetchLimits
from service.fhir.pool import ResourcePool

from .definitions import CATEGORIES
from .prefetch import PrefetchResult, gather
from .request import HookRequest


@dataclass
class Decision:
    cards: list[dict[str, Any]]
    evaluation: Evaluation
    prefetch: PrefetchResult


@dataclass
class Pipeline:
    rule_engine: RuleEngine
    vocab: Vocabulary
    limits: FetchLimits
    surgical_backup: str
    public_base_url: str
    clock: Callable[[], datetime]
    relevant: Callable[[str, Mapping[str, Any]], bool] = field(init=False)

    def __post_init__(self) -> None:
        self.relevant = read_by_rules(self.vocab)

    @property
    def base(self) -> RuleBase:
        return self.rule_engine.base

    def run(self, request: HookRequest) -> Decision:
        prefetch = gather(request, self.limits, self.relevant)
        draft = _draft_orders(request)
        readable.forget()  # its memo holds strings of this body: none kept past the intake
        return self.decide(prefetch, draft, request.patient_id, request.hook)

    def decide(
        self,
        prefetch: PrefetchResult,
        draft_orders: list[dict[str, Any]],
        patient_id: str | None,
        hook: str = "patient-view",
    ) -> Decision:
        available = frozenset(cat for cat, keys in CATEGORIES.items() if all(k in prefetch.complete for k in keys))
        inp = ExtractionInput(
            vocab=self.vocab,
            # in id order, not arrival order: every list a fact is built from (its references, its note) is
            # then the same however the EHR ordered its Bundles
            resources={t: sorted(items, key=lambda r: str(r.get("id"))) for t, items in prefetch.pool.by_type.items()},
            available=available,
            thresholds={k: float(v["value"]) for k, v in self.base.thresholds.items()},
            now=self.clock(),
            draft_orders=draft_orders,
            surgical_backup=self.surgical_backup,
            facts=self.base.facts,
        )
        facts = extract_facts(inp)
        evaluation = self.rule_engine.evaluate(facts)
        drafts = DraftOrders(
            draft_orders,
            self.vocab.concept_in,
            self.vocab.level_of,
            frozenset(f.level for f in facts if f.fid == "F-VCF" and f.known and f.value is True),
            hook,
        )
        context = CardContext(patient_id, self.public_base_url, drafts, prefetch.gap_lines(), prefetch.gaps())
        cards = build_cards(evaluation, self.base, context)
        return Decision(cards, evaluation, prefetch)


CODED_TYPES = frozenset({"Observation", "DiagnosticReport", "ImagingStudy"})


def read_by_rules(vocab: Vocabulary) -> Callable[[str, Mapping[str, Any]], bool]:
    """Which prefetch resources the fact extractor can read.

    Observations, DiagnosticReports and ImagingStudies are read only through their ``code``,
    ``valueCodeableConcept``, ``procedureCode`` or ``conclusionCode`` (a ValueSet member or a local
    code); every other type is kept as it is. A coding whose system or code is there but not a string
    cannot be ruled out: the resource is kept for the intake's check, which refuses it (its category
    is incomplete), never an error.
    Skipping the rest saves their R4B validation: a chart's vital signs, lab panels and notes are
    most of a large prefetch (see docs/performance.md).
    """
    sets = [vocab.valueset(vs_id) for vs_id in vocab.ids]
    exact: dict[str, set[str]] = {}  # system -> its codes some ValueSet holds
    for vs in sets:
        for system, code in vs.codes:
            exact.setdefault(system, set()).add(code)
    with_prefixes = {system: [vs for vs in sets if system in vs.prefixes] for vs in sets for system in vs.prefixes}

    def known(concept: Any) -> bool:  # vocabulary.codings inlined: this runs for every Observation
        if type(concept) is dict or isinstance(concept, Mapping):
            coding = concept.get("coding")
            for c in coding if type(coding) is list else ():
                if type(c) is not dict and not isinstance(c, Mapping):
                    continue
                system: Any = c.get("system")
                if system == LOCAL_SYSTEM:
                    return True
                code: Any = c.get("code")
                if type(system) is not str or type(code) is not str:
                    if (system is None or type(system) is str) and (code is None or type(code) is str):
                        continue  # no system or no code: nothing to look up
                    return True  # not a string where one belongs: cannot be ruled out; the intake refuses it
                codes = exact.get(system)
                if codes is not None and code in codes:
                    return True
                prefixed = with_prefixes.get(system)
                if prefixed and any(vs.contains(system, code) for vs in prefixed):
                    return True
        return False

    def relevant(rtype: str, resource: Mapping[str, Any]) -> bool:
        if rtype not in CODED_TYPES or known(resource.get("code")):
            return True
        value = resource.get("valueCodeableConcept")
        if value is not None and known(value):
            return True
        # an imaging study's procedure codes, a report's coded conclusions (e.g. cord compression)
        procedure, conclusion = resource.get("procedureCode"), resource.get("conclusionCode")
        if procedure is None and conclusion is None:
            return False
        for concepts in (procedure, conclusion):
            if isinstance(concepts, list) and any(known(concept) for concept in concepts):
                return True
        return False

    return relevant


def _draft_orders(request: HookRequest) -> list[dict[str, Any]]:
    """Every draft order of ``context.draftOrders``, whatever its type.

    The spec's order hooks carry MedicationRequest, ServiceRequest, NutritionOrder,
    VisionPrescription, DeviceRequest, ... drafts. Only ServiceRequests are read for their code
    (after R4 validation); every other draft, and a ServiceRequest that cannot be read, is kept as
    its type and id only, so it counts as an order of kind "other" and the emergency is never hidden
    because the order under review is of a type the rules do not read.
    """
    bundle = request.context.get("draftOrders")
    if not isinstance(bundle, dict):
        return []
    entries = bundle.get("entry")
    pool = ResourcePool()
    pool.add_payload(bundle, "context.draftOrders")
    orders: list[dict[str, Any]] = list(pool.of("ServiceRequest"))
    valid = {("ServiceRequest", o.get("id")) for o in orders}
    for entry in entries if isinstance(entries, list) else ():
        resource = entry.get("resource") if isinstance(entry, Mapping) else None
        if not isinstance(resource, Mapping) or not isinstance(resource.get("resourceType"), str):
            continue
        rtype, rid = resource["resourceType"], resource.get("id")
        rid = rid if isinstance(rid, str) else None
        if (rtype, rid) not in valid:
            orders.append({"resourceType": rtype, **({"id": rid} if rid is not None else {})})
    selections = request.context.get("selections")
    if request.hook == "order-select" and isinstance(selections, list) and selections:
        chosen = set(selections)
        orders = [o for o in orders if f"{o.get('resourceType')}/{o.get('id')}" in chosen] or orders
    return orders
