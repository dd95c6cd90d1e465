"""CDS Hooks endpoints: discovery, service calls, feedback."""

from __future__ import annotations

import json
import logging
import time
import weakref
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from sqlalchemy import insert, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from service import gc_pause
from service.db import feedback_items
from service.errors import ApiError
from service.memory_return import TRIM_AFTER_BYTES, release_free_memory
from service.ops import metrics
from service.state import AppState

from .definitions import SERVICES, ServiceDefinition
from .feedback_limits import (
    MAX_ACCEPTED_SUGGESTIONS,
    MAX_FEEDBACK_BYTES,
    MAX_FEEDBACK_ITEMS,
    MAX_SUGGESTION_ID_CHARS,
    STORED_TEXT,
)
from .prefetch import PrefetchUnavailable
from .request import parse_hook_request
from .strict_json import forget_cached_keys, json_request_body

log = logging.getLogger("spinecds.cds")
bp = Blueprint("cds", __name__)
FEEDBACK_RETRY_AFTER_S = 30  # seconds the EHR is asked to wait before resending feedback (503)
_RETRY = {"Retry-After": str(FEEDBACK_RETRY_AFTER_S)}


def _state() -> AppState:
    state: AppState = current_app.extensions["spinecds"]
    return state


def _service(service_id: str) -> ServiceDefinition:
    service = SERVICES.get(service_id)
    if service is None:
        raise ApiError(404, f"no CDS service {service_id!r}; see GET /cds-services")
    return service


@bp.get("/cds-services")
def discovery() -> Response:
    return jsonify({"services": [s.discovery() for s in SERVICES.values()]})


@bp.post("/cds-services/<service_id>")
def call_service(service_id: str) -> Response:
    """A service call. What it built (the parsed body, the pool, the facts) is freed once the answer has been
    sent, not before: freeing a large body takes milliseconds the EHR need not wait for. (A plain Flask app, such
    as the bench's floor, frees its parsed JSON when Flask pops the request context, before the server writes
    the answer; the CPU is the same either way.) The cyclic collector stays off until then (service/gc_pause.py)."""
    large = (request.content_length or 0) >= TRIM_AFTER_BYTES
    held: list[Any] = []
    end_pause = gc_pause.pause()
    try:
        response = _answer(service_id, held)
    except BaseException:
        held.clear()
        end_pause()
        raise
    release = _Release(held, end_pause, large)
    response.call_on_close(release)
    weakref.finalize(response, release)  # a response dropped unclosed still ends the pause (once)
    return response


class _Release:
    """After the answer was sent: free what the call held, end its collector pause, and after a large body give
    the freed heap back to the system (service/memory_return.py). Acts once, however often it is called."""

    def __init__(self, held: list[Any], end_pause: Callable[[], None], large: bool) -> None:
        self._held, self._end_pause, self._large = held, end_pause, large

    def __call__(self) -> None:
        self._held.clear()
        self._end_pause()  # itself once only
        if self._large:
            self._large = False
            forget_cached_keys()
            release_free_memory()


def _answer(service_id: str, held: list[Any]) -> Response:
    service = _service(service_id)
    body = json_request_body()
    held.append(body)
    hook_request = parse_hook_request(body, service)
    state = _state()
    started = time.perf_counter()
    try:
        decision = state.pipeline.run(hook_request)
    except PrefetchUnavailable as exc:
        metrics.observe_service_call(service.id, service.hook, "412")
        raise ApiError(
            412, "required FHIR data could not be obtained from prefetch or fhirServer", issues=exc.reasons
        ) from exc
    held.append(decision)
    _record_cards(state, service, hook_request.hook_instance, decision.cards)
    metrics.observe_service_call(service.id, service.hook, "ok", time.perf_counter() - started)
    metrics.cards_issued(decision.cards)
    pool = decision.prefetch.pool
    log.info(
        "service=%s hook=%s cards=%d rules=%s skipped=%d fetched=%s ms=%.1f",
        service.id,
        service.hook,
        len(decision.cards),
        ",".join(sorted({r for c in decision.cards for r in c["extension"]["org.spinecds.trace"]["rules"]})),
        len(pool.skipped),
        ",".join(decision.prefetch.fetched) or "-",
        (time.perf_counter() - started) * 1000,
    )
    return jsonify({"cards": decision.cards})


def _record_cards(state: AppState, service: ServiceDefinition, hook_instance: str, cards: list[dict[str, Any]]) -> None:
    if not cards or not state.schema.ensure():
        if cards:
            state.audit.missed("unreachable", len(cards), "database not reachable")
        return
    now = datetime.now(UTC)
    state.audit.record(
        [
            {
                "card_uuid": card["uuid"],
                "service_id": service.id,
                "hook_instance": hook_instance,
                "card_group": card["extension"]["org.spinecds.trace"]["card"],
                "indicator": card["indicator"],
                "rules": card["extension"]["org.spinecds.trace"]["rules"],
                "rule_base": card["extension"]["org.spinecds.trace"]["ruleBase"],
                "issued_at": now,
            }
            for card in cards
        ]
    )


@bp.post("/cds-services/<service_id>/feedback")
def feedback(service_id: str) -> Response:
    service = _service(service_id)
    items = _parse_feedback(json_request_body(MAX_FEEDBACK_BYTES))
    state = _state()
    rows = [_feedback_row(service.id, item) for item in items]
    stored: list[str] = []  # outcomes of the items stored now
    try:
        if not state.schema.ensure():
            raise ApiError(503, "feedback could not be stored now; retry later", headers=_RETRY)
        with state.db.begin() as conn:
            for row in rows:  # an item sent twice in one request is found by the second check
                if not _already_stored(conn, row):
                    conn.execute(insert(feedback_items).values(**row))
                    stored.append(row["outcome"])
    except SQLAlchemyError as exc:
        log.error("feedback not stored: database unavailable (%s)", type(exc).__name__)
        raise ApiError(503, "feedback could not be stored now; retry later", headers=_RETRY) from exc
    metrics.feedback_stored(service.id, stored)
    # honest counts: a resent item (the EHR lost the answer) is not stored twice, and says so
    return jsonify({"stored": len(stored), "alreadyStored": len(rows) - len(stored)})


def _feedback_row(service_id: str, item: dict[str, Any]) -> dict[str, Any]:
    reason = item.get("overrideReason") or {}
    coding = reason.get("reason") or {}
    row: dict[str, Any] = {
        "service_id": service_id,
        "card_uuid": item["card"],
        "outcome": item["outcome"],
        "outcome_timestamp": item["outcomeTimestamp"],
        "accepted_suggestions": [s["id"] for s in item.get("acceptedSuggestions", [])],
        "override_code": coding.get("code"),
        "override_system": coding.get("system"),
        "override_comment": reason.get("userComment"),
        "received_at": datetime.now(UTC),
    }
    return row


def _already_stored(conn: Connection, row: dict[str, Any]) -> bool:
    """The same item is stored already: the EHR resent it after a 503 whose commit did land.

    Resends come one after another (after Retry-After), so a read in the same transaction suffices.
    """
    f = feedback_items.c
    same = select(f.accepted_suggestions, f.override_code, f.override_system, f.override_comment).where(
        f.card_uuid == row["card_uuid"],
        f.service_id == row["service_id"],
        f.outcome == row["outcome"],
        f.outcome_timestamp == row["outcome_timestamp"],
    )
    wanted = (row["accepted_suggestions"], row["override_code"], row["override_system"], row["override_comment"])
    return any(tuple(stored) == wanted for stored in conn.execute(same))


def _parse_feedback(body: Any) -> list[dict[str, Any]]:
    if not isinstance(body, dict) or not isinstance(body.get("feedback"), list) or not body["feedback"]:
        raise ApiError(400, 'feedback body must be {"feedback": [ ... ]} with at least one item')
    if len(body["feedback"]) > MAX_FEEDBACK_ITEMS:
        raise ApiError(413, f"at most {MAX_FEEDBACK_ITEMS} feedback items per request; send the rest separately")
    problems: list[str] = []
    for i, item in enumerate(body["feedback"]):
        where = f"feedback[{i}]"
        if not isinstance(item, dict):
            problems.append(f"{where}: must be an object")
            continue
        if not _valid_unicode(item):
            problems.append(f"{where}: contains text that is not valid Unicode (a lone surrogate such as \\ud800)")
            continue
        if not isinstance(item.get("card"), str) or not item["card"]:
            problems.append(f"{where}.card: required card uuid")
        outcome = item.get("outcome")
        if outcome not in ("accepted", "overridden"):
            problems.append(f"{where}.outcome: must be 'accepted' or 'overridden' (cds-fb-1)")
        accepted = item.get("acceptedSuggestions")
        if accepted is not None and (
            not isinstance(accepted, list)
            or not all(isinstance(s, dict) and isinstance(s.get("id"), str) for s in accepted)
        ):
            problems.append(f'{where}.acceptedSuggestions: must be an array of {{"id": suggestion uuid}}')
        elif accepted is not None and len(accepted) > MAX_ACCEPTED_SUGGESTIONS:
            problems.append(f"{where}.acceptedSuggestions: at most {MAX_ACCEPTED_SUGGESTIONS} suggestions")
        elif accepted is not None and any(len(s["id"]) > MAX_SUGGESTION_ID_CHARS for s in accepted):
            problems.append(f"{where}.acceptedSuggestions: ids of at most {MAX_SUGGESTION_ID_CHARS} characters")
        if outcome == "accepted" and not accepted:
            problems.append(f"{where}.acceptedSuggestions: required when outcome is accepted (cds-fb-2)")
        reason = item.get("overrideReason")
        if reason is not None:
            problems += _override_problems(where, reason)
        if not _rfc3339(item.get("outcomeTimestamp")):
            problems.append(f"{where}.outcomeTimestamp: required RFC 3339 instant")
        problems += _stored_text_problems(where, item)
    if problems:
        raise ApiError(400, "invalid feedback", issues=problems)
    return list(body["feedback"])


def _stored_text_problems(where: str, item: dict[str, Any]) -> list[str]:
    """What the feedback table can hold (``STORED_TEXT``, the columns' sizes): longer or NUL-bearing text is the
    sender's error (400), never a database error that would read as an outage (503) and be retried forever."""
    problems = []
    for path, limit in STORED_TEXT:
        value: Any = item
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if not isinstance(value, str):
            continue
        name = ".".join((where, *path))
        if len(value) > limit:
            problems.append(f"{name}: longer than {limit} characters")
        if "\x00" in value:
            problems.append(f"{name}: must not contain NUL characters")
    return problems


def _valid_unicode(value: Any) -> bool:
    """No string in ``value`` (keys included) holds a lone surrogate, which JSON escapes can carry but no
    database encoding can store (it would fail as a 500 that the EHR retries forever)."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _override_problems(where: str, reason: Any) -> list[str]:
    if not isinstance(reason, dict):
        return [f"{where}.overrideReason: must be an object"]
    problems = []
    coding, comment = reason.get("reason"), reason.get("userComment")
    if coding is None and comment is None:
        problems.append(f"{where}.overrideReason: needs reason or userComment (cds-fb-3)")
    if coding is not None and not (
        isinstance(coding, dict) and isinstance(coding.get("code"), str) and isinstance(coding.get("system"), str)
    ):
        problems.append(f"{where}.overrideReason.reason: must be a Coding with system and code")
    if comment is not None and not isinstance(comment, str):
        problems.append(f"{where}.overrideReason.userComment: must be a string")
    return problems


def _rfc3339(value: Any) -> bool:
    if not isinstance(value, str) or "T" not in value:
        return False
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return parsed.tzinfo is not None
