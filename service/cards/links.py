"""The card link that launches the SMART app to record what a card asks for (docs/smart-app.md).

CDS Hooks 2.0 §Link: a link of type ``smart`` is launched by the EHR with SMART App Launch
(``iss`` + ``launch`` added by the EHR); its ``appContext`` (text) reaches the app in the token
response. Ours names the items (catalogue facts) and why each was asked; the app also works
without it, from the patient's own data.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from service.engine.runtime import Firing
from service.smart_app.forms import form_by_fact

LABEL = "Record the missing items"


def missing_item_asks(firings: Iterable[Firing]) -> list[dict[str, str]]:
    """The unknown facts the app can record, from the NEEDS_DATA conclusions of a card, with why."""
    recordable = form_by_fact()
    asks: dict[str, dict[str, str]] = {}
    for firing in firings:
        conclusion = firing.rule.conclude or {}
        if conclusion.get("type") != "NEEDS_DATA":
            continue
        for fact in firing.facts:  # the rule's own atoms: what it asks for (not the facts behind a derived one)
            if not fact.known and fact.fid in recordable and fact.fid not in asks:
                asks[fact.fid] = {
                    "fact": fact.fid,
                    "form": recordable[fact.fid],
                    "rule": firing.rule.id,
                    "why": str(conclusion.get("summary", "")),
                }
    return sorted(asks.values(), key=lambda a: a["fact"])


def record_missing_items_link(public_base_url: str, asks: list[dict[str, str]]) -> dict[str, Any]:
    return {
        "label": LABEL,
        "url": f"{public_base_url.rstrip('/')}/smart/launch",
        "type": "smart",
        "appContext": json.dumps({"asks": asks}, separators=(",", ":"), ensure_ascii=False),
    }
