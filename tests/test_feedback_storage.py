"""Feedback is validated per spec and every accepted item is persisted: SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from conftest import CASE_NOW
from sqlalchemy import Row, delete, select
from support.postgres import postgres_url

from service.app import create_app
from service.db import feedback_items

SERVICE = "spine-metastasis-review"


@pytest.fixture(params=["sqlite", "postgresql"])
def storage_app(request: pytest.FixtureRequest, tmp_path: Any) -> Any:
    url = f"sqlite:///{tmp_path / 'fb.db'}" if request.param == "sqlite" else postgres_url()
    app = create_app({"database_url": url}, clock=lambda: CASE_NOW)
    state = app.extensions["spinecds"]
    with state.db.begin() as conn:
        conn.execute(delete(feedback_items))
    return app


def _stored(app: Any) -> list[Row[Any]]:
    with app.extensions["spinecds"].db.connect() as conn:
        return list(conn.execute(select(feedback_items).order_by(feedback_items.c.id)))


def test_every_item_is_stored(storage_app: Any) -> None:
    cards = [str(uuid.uuid4()) for _ in range(3)]
    body = {
        "feedback": [
            {
                "card": cards[0],
                "outcome": "accepted",
                "acceptedSuggestions": [{"id": "s1"}],
                "outcomeTimestamp": "2026-06-01T12:00:00Z",
            },
            {
                "card": cards[1],
                "outcome": "overridden",
                "outcomeTimestamp": "2026-06-01T12:01:00Z",
                "overrideReason": {
                    "reason": {
                        "system": "https://fhir.spinecds.org/CodeSystem/override-reason",
                        "code": "patient-declined",
                        "display": "Patient declined",
                    },
                    "userComment": "prefers RT first",
                },
            },
            {"card": cards[2], "outcome": "overridden", "outcomeTimestamp": "2026-06-01T12:02:00+00:00"},
        ]
    }
    response = storage_app.test_client().post(f"/cds-services/{SERVICE}/feedback", json=body)
    assert response.status_code == 200
    rows = _stored(storage_app)
    assert [r.card_uuid for r in rows] == cards
    assert rows[0].accepted_suggestions == ["s1"]
    assert (rows[1].override_code, rows[1].override_comment) == ("patient-declined", "prefers RT first")


@pytest.mark.parametrize(
    ("item", "needle"),
    [
        ({"card": "c", "outcome": "maybe", "outcomeTimestamp": "2026-06-01T12:00:00Z"}, "cds-fb-1"),
        ({"card": "c", "outcome": "accepted", "outcomeTimestamp": "2026-06-01T12:00:00Z"}, "cds-fb-2"),
        (
            {"card": "c", "outcome": "overridden", "overrideReason": {}, "outcomeTimestamp": "2026-06-01T12:00:00Z"},
            "cds-fb-3",
        ),
        ({"card": "c", "outcome": "overridden", "outcomeTimestamp": "yesterday"}, "outcomeTimestamp"),
        ({"outcome": "overridden", "outcomeTimestamp": "2026-06-01T12:00:00Z"}, "card"),
    ],
)
def test_invalid_feedback_is_400_and_nothing_stored(storage_app: Any, item: dict[str, Any], needle: str) -> None:
    valid = {"card": "ok", "outcome": "overridden", "outcomeTimestamp": "2026-06-01T12:00:00Z"}
    response = storage_app.test_client().post(f"/cds-services/{SERVICE}/feedback", json={"feedback": [valid, item]})
    assert response.status_code == 400
    assert needle in str(response.get_json())
    assert _stored(storage_app) == []


def test_feedback_needs_json(storage_app: Any) -> None:
    response = storage_app.test_client().post(f"/cds-services/{SERVICE}/feedback", data="x", content_type="text/plain")
    assert response.status_code == 415
    assert response.get_json()["resourceType"] == "OperationOutcome"


def test_feedback_for_unknown_service_is_404(storage_app: Any) -> None:
    response = storage_app.test_client().post("/cds-services/nope/feedback", json={"feedback": []})
    assert response.status_code == 404


def test_feedback_while_database_down_is_503(tmp_path: Any) -> None:
    app = create_app({"database_url": f"sqlite:///{tmp_path / 'fb.db'}"}, clock=lambda: CASE_NOW)
    app.extensions["spinecds"].db.dispose()
    (tmp_path / "fb.db").unlink()
    (tmp_path / "fb.db").mkdir()  # the database file is now a directory: every write fails
    body = {"feedback": [{"card": "c", "outcome": "overridden", "outcomeTimestamp": "2026-06-01T12:00:00Z"}]}
    response = app.test_client().post(f"/cds-services/{SERVICE}/feedback", json=body)
    assert response.status_code == 503
    assert response.get_json()["resourceType"] == "OperationOutcome"


def test_a_resent_item_is_stored_once(storage_app: Any) -> None:
    """An EHR that got a 503 after the commit landed resends: the item is not counted twice."""
    card = str(uuid.uuid4())
    item = {
        "card": card,
        "outcome": "accepted",
        "acceptedSuggestions": [{"id": "s1"}],
        "outcomeTimestamp": "2026-06-01T12:00:00Z",
    }
    client = storage_app.test_client()
    for _ in range(2):
        assert client.post(f"/cds-services/{SERVICE}/feedback", json={"feedback": [item]}).status_code == 200
    later = {**item, "outcomeTimestamp": "2026-06-01T12:05:00Z"}
    overridden = {"card": card, "outcome": "overridden", "outcomeTimestamp": "2026-06-01T12:06:00Z"}
    assert client.post(f"/cds-services/{SERVICE}/feedback", json={"feedback": [later, overridden]}).status_code == 200
    stored = [(f.card_uuid, f.outcome, f.outcome_timestamp) for f in _stored(storage_app)]
    assert stored == [
        (card, "accepted", "2026-06-01T12:00:00Z"),
        (card, "accepted", "2026-06-01T12:05:00Z"),
        (card, "overridden", "2026-06-01T12:06:00Z"),
    ]
