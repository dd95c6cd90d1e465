"""``GET /fhir/PlanDefinition`` (searchset Bundle) and ``GET /fhir/PlanDefinition/{id}``."""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, current_app, request

from service.errors import ApiError
from service.fhir_api.plandefinition import plan_definitions
from service.state import AppState

bp = Blueprint("fhir_api", __name__, url_prefix="/fhir")
FHIR_JSON = "application/fhir+json"
SEARCH_PARAMS = {"_id": "id", "url": "url", "name": "name", "status": "status"}


def _definitions() -> dict[str, dict[str, Any]]:
    cache: dict[str, dict[str, Any]] | None = current_app.extensions.get("spinecds.plandefinitions")
    if cache is None:
        state: AppState = current_app.extensions["spinecds"]
        cache = plan_definitions(state.pipeline.base)
        current_app.extensions["spinecds.plandefinitions"] = cache
    return cache


def _fhir(body: dict[str, Any]) -> Response:
    return Response(json.dumps(body, ensure_ascii=False), mimetype=FHIR_JSON)


@bp.get("/PlanDefinition")
def search() -> Response:
    unknown = sorted(set(request.args) - set(SEARCH_PARAMS) - {"_format"})
    if unknown:
        raise ApiError(400, f"unsupported search parameter(s): {', '.join(unknown)}")
    matches = list(_definitions().values())
    for param, field in SEARCH_PARAMS.items():
        wanted = request.args.get(param)
        if wanted is not None:
            allowed = set(wanted.split(","))
            matches = [m for m in matches if str(m.get(field)) in allowed]
    base = request.base_url
    return _fhir(
        {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(matches),
            "link": [{"relation": "self", "url": request.url}],
            "entry": [{"fullUrl": f"{base}/{m['id']}", "resource": m, "search": {"mode": "match"}} for m in matches],
        }
    )


@bp.get("/PlanDefinition/<plan_id>")
def read(plan_id: str) -> Response:
    found = _definitions().get(plan_id)
    if found is None:
        raise ApiError(404, f"PlanDefinition/{plan_id} not found")
    return _fhir(found)
