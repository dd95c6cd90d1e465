"""Operations and reference endpoints: health probes and the rule reference."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, request
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from service.engine.catalogue import rule_reference
from service.errors import ApiError
from service.migrations import schema_problem
from service.ops.metrics import exposition
from service.ops.rule_pages import index_page, rule_page, wants_html
from service.state import AppState

bp = Blueprint("ops", __name__)
READY_RETRY_AFTER_S = "5"


def _state() -> AppState:
    state: AppState = current_app.extensions["spinecds"]
    return state


@bp.get("/health/live")
def live() -> Response:
    return jsonify({"status": "ok"})


@bp.get("/metrics")
def metrics() -> Response:
    body, content_type = exposition()
    return Response(body, content_type=content_type)


@bp.get("/health/ready")
def ready() -> Response:
    state = _state()
    retry = {"Retry-After": READY_RETRY_AFTER_S}
    if not state.schema.ensure():
        raise ApiError(503, "database not reachable", headers=retry)
    try:
        with state.db.connect() as conn:
            conn.execute(text("SELECT 1"))
            schema = schema_problem(conn)
    except SQLAlchemyError as exc:
        raise ApiError(503, "database not reachable", headers=retry) from exc
    if schema:
        raise ApiError(503, schema, headers=retry)
    return jsonify(
        {"status": "ready", "rules": len(state.pipeline.base.rule_ids), "ruleBase": state.pipeline.base.digest}
    )


@bp.get("/rules")
def rules_index() -> Response:
    base = _state().pipeline.base
    if wants_html(request):
        return _html(index_page(base, request.script_root + "/rules"))
    response = jsonify({"ruleBase": base.digest, "rules": [rule_reference(base.by_id(rid)) for rid in base.rule_ids]})
    response.vary.add("Accept")
    return response


@bp.get("/rules/<rule_id>")
def rule_detail(rule_id: str) -> Response:
    rules = _state().pipeline.base.by_id(rule_id)
    if not rules:
        raise ApiError(404, f"no rule {rule_id!r}")
    if wants_html(request):
        return _html(rule_page(_state().pipeline.base, rules, request.script_root + "/rules"))
    response = jsonify(rule_reference(rules))
    response.vary.add("Accept")
    return response


def _html(page: str) -> Response:
    response = Response(page, content_type="text/html; charset=utf-8")
    response.vary.add("Accept")
    return response
