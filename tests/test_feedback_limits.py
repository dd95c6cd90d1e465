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


def _schema_at(document: dict[str, Any], schema: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    """The schema of ``path`` under ``schema``, following ``$ref`` and ``allOf`` (merged, later parts win)."""

    def flat(s: dict[str, Any]) -> dict[str, Any]:
        if "$ref" in s:
            s = {
                **document["components"]["schemas"][s["$ref"].rsplit("/", 1)[1]],
                **{k: v for k, v in s.items() if k != "$ref"},
            }
        merged: dict[str, Any] = {k: v for k, v in s.items() if k != "allOf"}
        for part in s.get("allOf", []):
            part = flat(part)
            props = {**merged.get("properties", {})}
            for name, sub in part.get("properties", {}).items():
                props[name] = {**props.get(name, {}), **sub}
            merged = {**merged, **part, "properties": props}
        return merged

    schema = flat(schema)
    for key in path:
        schema = flat(schema["properties"][key])
    return schema


def test_the_openapi_document_states_the_limits_the_service_applies() -> None:
    from service.api_docs.blueprint import openapi_document
    from service.cds.feedback_limits import MAX_ACCEPTED_SUGGESTIONS, MAX_SUGGESTION_ID_CHARS, STORED_TEXT

    document = openapi_document()
    schemas = document["components"]["schemas"]
    assert schemas["FeedbackRequest"]["properties"]["feedback"]["maxItems"] == MAX_FEEDBACK_ITEMS
    item_schema = schemas["FeedbackItem"]
    for path, limit in STORED_TEXT:
        assert _schema_at(document, item_schema, path).get("maxLength") == limit, path
    suggestions = _schema_at(document, item_schema, ("acceptedSuggestions",))
    assert suggestions["maxItems"] == MAX_ACCEPTED_SUGGESTIONS
    assert suggestions["items"]["properties"]["id"]["maxLength"] == MAX_SUGGESTION_ID_CHARS
    too_large = document["paths"]["/cds-services/{id}/feedback"]["post"]["responses"]["413"]["description"]
    assert MAX_FEEDBACK_BYTES == 1_048_576 and "over 1 MiB" in too_large
    assert f"more than {MAX_FEEDBACK_ITEMS} items" in too_large


def test_the_readme_and_security_page_state_the_same_limits() -> None:
    from pathlib import Path

    from service.cds.feedback_limits import MAX_ACCEPTED_SUGGESTIONS, MAX_SUGGESTION_ID_CHARS

    root = Path(__file__).resolve().parent.parent
    readme = (root / "README.md").read_text(encoding="utf-8")
    assert f"≤ 1 MiB and ≤ {MAX_FEEDBACK_ITEMS} items (413), comment ≤ {MAX_USER_COMMENT_CHARS} characters" in readme
    security = (root / "docs" / "security.md").read_text(encoding="utf-8")
    assert (
        f"1 MiB and {MAX_FEEDBACK_ITEMS} items per request (413); `userComment` {MAX_USER_COMMENT_CHARS} characters, "
        f"{MAX_ACCEPTED_SUGGESTIONS} suggestions of ids ≤ {MAX_SUGGESTION_ID_CHARS} characters per item"
    ) in security
