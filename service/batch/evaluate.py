"""Run the service pipeline (``service.cds.assemble.build_pipeline(offline=True)``) on offline subjects: same
validation, facts, rules and cards as a call."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

from service.cds.definitions import SERVICES
from service.cds.pipeline import Pipeline
from service.cds.prefetch import PrefetchUnavailable
from service.cds.request import parse_hook_request
from service.errors import ApiError

from .inputs import Subject

TRACE_KEY = "org.spinecds.trace"


@dataclass
class Outcome:
    label: str
    service_id: str | None
    cards: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    bad_input: bool = False

    @property
    def rules(self) -> list[str]:
        return sorted({r for c in self.cards for r in c["extension"][TRACE_KEY]["rules"]})

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"input": self.label, "service": self.service_id}
        if self.error is not None:
            out["error"] = self.error
            out["badInput"] = self.bad_input
        else:
            out["cards"] = self.cards
        return out


def evaluate(pipeline: Pipeline, subject: Subject) -> Outcome:
    """Evaluate one subject; data problems become an error on the outcome, never an exception."""
    if subject.body is None or subject.service_id is None:
        return Outcome(subject.label, subject.service_id, error=subject.error or "nothing to evaluate")
    try:
        request = parse_hook_request(subject.body, SERVICES[subject.service_id])
    except ApiError as exc:
        return Outcome(subject.label, subject.service_id, error="; ".join([exc.message, *exc.issues]), bad_input=True)
    request = replace(request, fhir_server=None, access_token=None)  # offline: never fetch
    try:
        decision = pipeline.run(request)
    except ApiError as exc:  # a contradictory prefetch (another patient's Patient, a wrong-shaped key)
        return Outcome(subject.label, subject.service_id, error="; ".join([exc.message, *exc.issues]), bad_input=True)
    except PrefetchUnavailable as exc:
        reasons = "; ".join(exc.reasons)
        return Outcome(subject.label, subject.service_id, error=f"required FHIR data unavailable: {reasons}")
    return Outcome(subject.label, subject.service_id, cards=decision.cards)


@dataclass
class Summary:
    inputs: int = 0
    cards: int = 0
    errors: int = 0
    bad_inputs: int = 0
    cards_per_rule: Counter[str] = field(default_factory=Counter)
    cards_per_indicator: Counter[str] = field(default_factory=Counter)

    def add(self, outcome: Outcome) -> None:
        self.inputs += 1
        if outcome.error is not None:
            if outcome.bad_input:
                self.bad_inputs += 1
            else:
                self.errors += 1
            return
        self.cards += len(outcome.cards)
        for card in outcome.cards:
            self.cards_per_indicator[card["indicator"]] += 1
            for rule in card["extension"][TRACE_KEY]["rules"]:
                self.cards_per_rule[rule] += 1

    @property
    def exit_code(self) -> int:
        """0 every input evaluated; 1 some evaluations failed (data unavailable); 2 bad input."""
        if self.bad_inputs:
            return 2
        return 1 if self.errors else 0

    def as_json(self) -> dict[str, Any]:
        return {
            "inputs": self.inputs,
            "cards": self.cards,
            "errors": self.errors,
            "badInputs": self.bad_inputs,
            "cardsPerRule": dict(sorted(self.cards_per_rule.items())),
            "cardsPerIndicator": dict(sorted(self.cards_per_indicator.items())),
        }
