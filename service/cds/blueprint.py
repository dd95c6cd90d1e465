"""CDS Hooks endpoints: discovery, service calls, feedback."""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from sqlalchemy.exc import SQLAlchemyError

from service.db import FeedbackItem, IssuedCard
from service.errors import ApiError
from service.state import AppState

from .definitions import SERVICES, ServiceDefinition
from .prefetch import PrefetchUnavailable
from .request import parse_hook_request

log = logging.getLogger("spinecds.cds")
bp = Blueprint("cds", __name__)


def _state() -> AppState:
    state: AppState = current_app.extensions["spinecds"]
    return state


def _service(service_id: str) -> ServiceDefinition:
    service = SERVICES.get(service_id)
    if service is None:
        raise ApiError(404, f"no CDS service {service_id!r}; see GET /cds-services")
    return service


def _json_body() -> Any:
    mimetype = request.mimetype or ""
    if not (mimetype == "application/json" or mimetype.endswith("+json")):
        raise ApiError(415, "send the request as application/json")
    body = request.get_json(silent=True)
    if body is None:
        raise ApiError(400, "request body is not valid JSON")
    return body


@bp.get("/cds-services")
def discovery() -> Response:
    return jsonify({"services": [s.discovery() for s in SERVICES.values()]})


@bp.post("/cds-services/<service_id>")
def call_service(service_id: str) -> Response:
    service = _service(service_id)
    hook_request = parse_hook_request(_json_body(), service)
    state = _state()
    started = time.perf_counter()
    try:
        decision = state.pipeline.run(hook_request)
    except PrefetchUnavailable as exc:
        raise ApiError(
            412, "required FHIR data could not be obtained from prefetch or fhirServer", issues=exc.reasons
        ) from exc
    _record_cards(state, service, hook_request.hook_instance, decision.cards)
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
    if not cards:
        return
    try:
        with state.sessions.begin() as session:
            for card in cards:
                trace = card["extension"]["org.spinecds.trace"]
                session.add(
                    IssuedCard(
                        card_uuid=card["uuid"],
                        service_id=service.id,
                        hook_instance=hook_instance,
                        card_group=trace["card"],
                        indicator=card["indicator"],
                        rules=trace["rules"],
                        rule_base=trace["ruleBase"],
                    )
                )
    except SQLAlchemyError:
        # cards are still valid advice; the audit row is lost and that is logged loudly
        log.exception("could not record issued cards")


@bp.post("/cds-services/<service_id>/feedback")
def feedback(service_id: str) -> Response:
    service = _service(service_id)
    items = _parse_feedback(_json_body())
    state = _state()
    try:
        with state.sessions.begin() as session:
            for item in items:
                reason = item.get("overrideReason") or {}
                coding = reason.get("reason") or {}
                session.add(
                    FeedbackItem(
                        service_id=service.id,
                        card_uuid=item["card"],
                        outcome=item["outcome"],
                        outcome_timestamp=item["outcomeTimestamp"],
                        accepted_suggestions=[s["id"] for s in item.get("acceptedSuggestions", [])],
                        override_code=coding.get("code"),
                        override_system=coding.get("system"),
                        override_comment=reason.get("userComment"),
                    )
                )
    except SQLAlchemyError as exc:
        log.error("feedback not stored: database unavailable (%s)", type(exc).__name__)
        raise ApiError(503, "feedback could not be stored now; retry later") from exc
    return jsonify({"stored": len(items)})


def _parse_feedback(body: Any) -> list[dict[str, Any]]:
    if not isinstance(body, dict) or not isinstance(body.get("feedback"), list) or not body["feedback"]:
        raise ApiError(400, 'feedback body must be {"feedback": [ ... ]} with at least one item')
    problems: list[str] = []
    for i, item in enumerate(body["feedback"]):
        where = f"feedback[{i}]"
        if not isinstance(item, dict):
            problems.append(f"{where}: must be an object")
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
        if outcome == "accepted" and not accepted:
            problems.append(f"{where}.acceptedSuggestions: required when outcome is accepted (cds-fb-2)")
        reason = item.get("overrideReason")
        if reason is not None:
            problems += _override_problems(where, reason)
        if not _rfc3339(item.get("outcomeTimestamp")):
            problems.append(f"{where}.outcomeTimestamp: required RFC 3339 instant")
    if problems:
        raise ApiError(400, "invalid feedback", issues=problems)
    return list(body["feedback"])


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
