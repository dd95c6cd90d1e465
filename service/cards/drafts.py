"""Suggestions that act on the draft order under review (order-select / order-sign).

A rule names a draft suggestion of ``rules/cards.yaml`` (``draft_suggestions``); it becomes a
CDS Hooks action only when ``context.draftOrders`` holds an order of the named ValueSet:
``delete`` withdraws that draft (``resourceId``), ``update`` sends the whole draft back changed.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

ORDER_HOOKS = frozenset({"order-select", "order-sign"})
ORDER_KINDS = {"va": "vertebral-augmentation-procedure", "rt": "radiotherapy-course"}


@dataclass(frozen=True)
class DraftOrders:
    """The draft orders of the request and how to read them (codes, vertebral levels)."""

    orders: Sequence[dict[str, Any]]
    concept_in: Callable[[str, Any], bool]
    level_of: Callable[[Any], str | None]
    fractured_levels: frozenset[str]  # levels with F-VCF true
    hook: str = "patient-view"

    def kinds(self) -> frozenset[str] | None:
        """The kinds of draft under review (va, rt); None at patient-view, where every card shows."""
        if self.hook not in ORDER_HOOKS:
            return None
        found = {"other"}  # whatever is drafted (a medication, or nothing we read): the emergency still shows
        for order in self.orders:
            kinds = (
                {kind for kind, vs_id in ORDER_KINDS.items() if self.concept_in(vs_id, order.get("code"))}
                if order.get("resourceType") == "ServiceRequest"
                else set()
            )
            found |= kinds or {"other"}  # any other order: only what outranks everything (the emergency)
        return frozenset(found or {"other"})  # no readable draft at all: still the emergency


def draft_suggestions(spec: dict[str, Any], drafts: DraftOrders) -> list[dict[str, Any]]:
    out = []
    for order in drafts.orders:
        if (
            order.get("resourceType") != "ServiceRequest"
            or not isinstance(order.get("id"), str)
            or not drafts.concept_in(spec["order"], order.get("code"))
        ):
            continue
        reference = f"ServiceRequest/{order['id']}"
        if spec["action"] == "delete":
            action: dict[str, Any] = {"type": "delete", "description": spec["label"], "resourceId": reference}
        else:
            updated = _updated(order, spec, drafts)
            if updated is None:
                continue
            action = {"type": "update", "description": spec["label"], "resource": updated}
        out.append({"label": spec["label"], "uuid": str(uuid.uuid4()), "isRecommended": False, "actions": [action]})
    return out


def _updated(order: dict[str, Any], spec: dict[str, Any], drafts: DraftOrders) -> dict[str, Any] | None:
    if spec.get("keep") != "fractured-levels":
        return None
    fractured = drafts.fractured_levels
    sites = order.get("bodySite")
    if not isinstance(sites, list):
        return None
    kept = [s for s in sites if drafts.level_of(s) in fractured]
    if not kept or len(kept) == len(sites):
        return None  # nothing to keep, or nothing to drop: the clinician decides
    updated = copy.deepcopy(order)
    updated["bodySite"] = kept
    return updated


def medication_proposal(spec: dict[str, Any], patient_id: str, reasons: Sequence[str], source: str) -> dict[str, Any]:
    """A draft MedicationRequest (proposal) for an emergency suggestion of rules/cards.yaml: the
    RxNorm clinical drug, the dose and timing the cited source gives (cards.yaml), the source in ``note``."""
    med = spec["medication"]
    resource: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "status": "draft",
        "intent": "proposal",
        "priority": spec.get("priority", "routine"),
        "medicationCodeableConcept": {
            "coding": [{"system": med["system"], "code": med["code"], "display": med["display"]}],
            "text": med["display"],
        },
        "subject": {"reference": f"Patient/{patient_id}"},
        "dosageInstruction": [
            {
                "text": spec["dosage_text"],
                "timing": {"repeat": dict(spec["timing"])},
                "doseAndRate": [
                    {
                        "doseQuantity": {
                            "value": spec["dose_mg"],
                            "unit": "mg",
                            "system": "http://unitsofmeasure.org",
                            "code": "mg",
                        }
                    }
                ],
            }
        ],
        "note": [{"text": f"Source: {source}"}],
    }
    if reasons:
        resource["reasonReference"] = [{"reference": r} for r in reasons]
    return resource
