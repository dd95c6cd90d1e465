"""One CDS Hooks call: prefetch -> facts -> rules -> cards. Pure of Flask, reused by the CLI."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from service.cards.build import CardContext, build_cards
from service.cards.drafts import DraftOrders
from service.engine.ruleset import RuleBase
from service.engine.runtime import Engine, Evaluation
from service.facts.extract import ExtractionInput, extract_facts
from service.facts.vocabulary import Vocabulary
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
    engine: Engine
    vocab: Vocabulary
    limits: FetchLimits
    surgical_backup: str
    public_base_url: str
    clock: Callable[[], datetime]

    @property
    def base(self) -> RuleBase:
        return self.engine.base

    def run(self, request: HookRequest) -> Decision:
        prefetch = gather(request, self.limits)
        draft = _draft_orders(request)
        return self.decide(prefetch, draft, request.patient_id)

    def decide(self, prefetch: PrefetchResult, draft_orders: list[dict[str, Any]], patient_id: str | None) -> Decision:
        available = frozenset(cat for cat, keys in CATEGORIES.items() if all(k in prefetch.complete for k in keys))
        inp = ExtractionInput(
            vocab=self.vocab,
            resources=prefetch.pool.by_type,
            available=available,
            thresholds={k: float(v["value"]) for k, v in self.base.thresholds.items()},
            now=self.clock(),
            draft_orders=draft_orders,
            surgical_backup=self.surgical_backup,
        )
        facts = extract_facts(inp)
        evaluation = self.engine.evaluate(facts)
        drafts = DraftOrders(
            draft_orders,
            self.vocab.concept_in,
            self.vocab.level_of,
            frozenset(f.level for f in facts if f.fid == "F-VCF" and f.known and f.value is True),
        )
        cards = build_cards(evaluation, self.base, CardContext(patient_id, self.public_base_url, drafts))
        return Decision(cards, evaluation, prefetch)


def _draft_orders(request: HookRequest) -> list[dict[str, Any]]:
    bundle = request.context.get("draftOrders")
    if not isinstance(bundle, dict):
        return []
    pool = ResourcePool()
    pool.add_payload(bundle, "context.draftOrders")
    orders = pool.of("ServiceRequest")
    selections = request.context.get("selections")
    if request.hook == "order-select" and isinstance(selections, list) and selections:
        chosen = set(selections)
        orders = [o for o in orders if f"ServiceRequest/{o.get('id')}" in chosen] or orders
    return orders
