"""Feedback through the real server (gunicorn, PostgreSQL): bounded in size, honest about what it stored.

A field over its limit is a 400 naming the field; a request over the feedback size or item limit
is a 413; both OperationOutcomes, nothing stored. The answer counts the items stored now and the
items that were already stored (an EHR resending after a lost answer, or the same item twice in
one request), so ``stored`` is never more than the rows written.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from sqlalchemy import create_engine, func, select
from support.gunicorn import SpinecdsServer
from support.scratch_db import scratch_postgres

from service.cds.feedback_limits import (
    MAX_FEEDBACK_BYTES,
    MAX_FEEDBACK_ITEMS,
    MAX_USER_COMMENT_CHARS,
)
from service.db import feedback_items

FEEDBACK = "/cds-services/spine-metastasis-review/feedback"


@pytest.fixture(scope="module")
def server() -> Iterator[SpinecdsServer]:
    with scratch_postgres("spinecds_feedback_limits") as url, SpinecdsServer({"SPINECDS_DATABASE_URL": url}) as srv:
        yield srv


def item(card: str | None = None, comment: str = "not now") -> dict[str, Any]:
    return {
        "card": card or str(uuid.uuid4()),
        "outcome": "overridden",
        "overrideReason": {"userComment": comment},
        "outcomeTimestamp": "2026-06-01T12:00:00Z",
    }


def rows(server: SpinecdsServer, card: str) -> int:
    engine = create_engine(server.env["SPINECDS_DATABASE_URL"])
    try:
        with engine.connect() as conn:
            query = select(func.count()).select_from(feedback_items).where(feedback_items.c.card_uuid == card)
            return int(conn.execute(query).scalar_one())
    finally:
        engine.dispose()


def post(server: SpinecdsServer, body: Any) -> requests.Response:
    return requests.post(server.url(FEEDBACK), json=body, timeout=60)


def outcome(response: requests.Response, status: int) -> str:
    assert response.status_code == status, response.text[:300]
    assert response.headers["Content-Type"].startswith("application/fhir+json")
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    return " ".join(issue["diagnostics"] for issue in body["issue"])


def test_the_same_item_three_times_is_one_row_and_the_answer_says_so(server: SpinecdsServer) -> None:
    same = item()
    assert post(server, {"feedback": [same, same, same]}).json() == {"stored": 1, "alreadyStored": 2}
    assert rows(server, same["card"]) == 1
    # the EHR resends after losing the answer: nothing new is stored, and the answer is honest
    assert post(server, {"feedback": [same]}).json() == {"stored": 0, "alreadyStored": 1}
    fresh = item()
    assert post(server, {"feedback": [same, fresh]}).json() == {"stored": 1, "alreadyStored": 1}
    assert rows(server, same["card"]) == 1 and rows(server, fresh["card"]) == 1


def test_a_twenty_million_character_comment_is_refused_not_stored(server: SpinecdsServer) -> None:
    huge = item(comment="x" * 20_000_000)
    outcome(post(server, {"feedback": [huge]}), 413)
    assert rows(server, huge["card"]) == 0


def test_a_comment_over_the_field_limit_is_a_400_naming_the_field(server: SpinecdsServer) -> None:
    long = item(comment="y" * (MAX_USER_COMMENT_CHARS + 1))
    text = outcome(post(server, {"feedback": [long]}), 400)
    assert "feedback[0].overrideReason.userComment" in text and str(MAX_USER_COMMENT_CHARS) in text
    assert rows(server, long["card"]) == 0
    at_limit = item(comment="y" * MAX_USER_COMMENT_CHARS)
    assert post(server, {"feedback": [at_limit]}).json() == {"stored": 1, "alreadyStored": 0}


def test_too_many_items_or_bytes_in_one_request_is_a_413(server: SpinecdsServer) -> None:
    many = [item() for _ in range(MAX_FEEDBACK_ITEMS + 1)]
    assert str(MAX_FEEDBACK_ITEMS) in outcome(post(server, {"feedback": many}), 413)
    assert rows(server, many[0]["card"]) == 0
    padded = item(comment="z" * 100)
    padded["extension"] = {"padding": "p" * MAX_FEEDBACK_BYTES}
    outcome(post(server, {"feedback": [padded]}), 413)
    assert rows(server, padded["card"]) == 0


def test_many_suggestions_or_long_suggestion_ids_are_400(server: SpinecdsServer) -> None:
    accepted = item()
    del accepted["overrideReason"]
    accepted["outcome"] = "accepted"
    accepted["acceptedSuggestions"] = [{"id": "s" * 101}]
    assert "acceptedSuggestions" in outcome(post(server, {"feedback": [accepted]}), 400)
    accepted["acceptedSuggestions"] = [{"id": str(uuid.uuid4())} for _ in range(101)]
    assert "acceptedSuggestions" in outcome(post(server, {"feedback": [accepted]}), 400)
    assert rows(server, accepted["card"]) == 0
