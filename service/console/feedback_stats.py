"""Acceptance and override rates per rule: feedback items joined to the issued cards' rule IDs."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from service.db import feedback_items, issued_cards


def feedback_by_rule(conn: Connection) -> dict[str, Any]:
    """Per rule: cards issued, feedback received (accepted / overridden) and the two rates.

    A card's latest feedback item counts (an EHR may resend); feedback for a card this service
    has no record of is counted as ``unmatched``.
    """
    issued: dict[str, list[str]] = {}
    per_rule: dict[str, dict[str, int]] = defaultdict(lambda: {"issued": 0, "accepted": 0, "overridden": 0})
    for card_uuid, rules in conn.execute(select(issued_cards.c.card_uuid, issued_cards.c.rules)):
        issued[card_uuid] = list(rules or [])
        for rule in issued[card_uuid]:
            per_rule[rule]["issued"] += 1
    latest: dict[str, str] = {}
    rows = conn.execute(select(feedback_items.c.card_uuid, feedback_items.c.outcome).order_by(feedback_items.c.id))
    for card_uuid, outcome in rows:
        latest[card_uuid] = outcome
    unmatched = 0
    for card_uuid, outcome in latest.items():
        card_rules = issued.get(card_uuid)
        if card_rules is None:
            unmatched += 1
            continue
        for rule in card_rules:
            if outcome in ("accepted", "overridden"):
                per_rule[rule][outcome] += 1
    out = []
    for rule, counts in sorted(per_rule.items()):
        answered = counts["accepted"] + counts["overridden"]
        out.append(
            {
                "rule": rule,
                **counts,
                "feedback": answered,
                "acceptanceRate": round(counts["accepted"] / answered, 4) if answered else None,
                "overrideRate": round(counts["overridden"] / answered, 4) if answered else None,
            }
        )
    return {
        "rules": out,
        "cardsWithFeedback": len(latest) - unmatched,
        "unmatchedFeedback": unmatched,
    }
