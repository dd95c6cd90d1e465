"""A read-only FHIR R4 REST surface: ``GET /fhir/metadata`` (CapabilityStatement),
``GET /fhir/PlanDefinition`` (searchset Bundle), ``GET /fhir/PlanDefinition/{id}`` and
``GET /fhir/CodeSystem/override-reason`` (the codes of every card's overrideReasons, from the loaded rule base;
the same resource is in the FHIR package, fhir_profiles/).

Only JSON is served. A client that asks for another format (``_format=xml``, ``Accept:
application/fhir+xml``) gets 406 Not Acceptable, as the FHIR RESTful API requires, never JSON with 200.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, current_app, request

from service import __version__
from service.errors import ApiError
from service.fhir_api.codesystems import OVERRIDE_REASON_ID, override_reason_codesystem
from service.fhir_api.plandefinition import plan_definitions
from service.state import AppState

bp = Blueprint("fhir_api", __name__, url_prefix="/fhir")
FHIR_JSON = "application/fhir+json"
SEARCH_PARAMS = {"_id": "id", "url": "url", "name": "name", "status": "status"}
JSON_FORMATS = frozenset({"json", "application/json", "application/fhir+json", "application/json+fhir"})
JSON_MIMETYPES = ["application/fhir+json", "application/json"]


@bp.before_request
def _only_json() -> None:
    """406 for any representation other than JSON (``_format`` overrides ``Accept``)."""
    fmt = request.args.get("_format")
    if fmt is not None:
        if fmt.split(";")[0].strip().lower() not in JSON_FORMATS:
            raise ApiError(406, f"_format {fmt[:40]!r} is not supported: this server serves application/fhir+json only")
        return
    accept = request.accept_mimetypes
    if accept and accept.provided and accept.best_match(JSON_MIMETYPES) is None:
        raise ApiError(406, "the Accept header names no JSON format: this server serves application/fhir+json only")


def _definitions() -> dict[str, dict[str, Any]]:
    cache: dict[str, dict[str, Any]] | None = current_app.extensions.get("spinecds.plandefinitions")
    if cache is None:
        state: AppState = current_app.extensions["spinecds"]
        cache = plan_definitions(state.pipeline.base)
        current_app.extensions["spinecds.plandefinitions"] = cache
    return cache


def _fhir(body: dict[str, Any]) -> Response:
    return Response(json.dumps(body, ensure_ascii=False), mimetype=FHIR_JSON)


@bp.get("/metadata")
def metadata() -> Response:
    """The CapabilityStatement of this read-only PlanDefinition endpoint (FHIR R4 4.0.1)."""
    base = request.url_root.rstrip("/") + bp.url_prefix if bp.url_prefix else request.url_root
    search_params = [
        {"name": "_id", "type": "token"},
        {"name": "url", "type": "uri"},
        {"name": "name", "type": "string"},
        {"name": "status", "type": "token"},
    ]
    return _fhir(
        {
            "resourceType": "CapabilityStatement",
            "status": "active",
            "date": _rule_base_date(),
            "publisher": "spinecds",
            "kind": "instance",
            "software": {"name": "spinecds", "version": __version__},
            "implementation": {"description": "spinecds rule base as FHIR R4 PlanDefinitions", "url": base},
            "fhirVersion": "4.0.1",
            "format": ["application/fhir+json", "json"],
            "rest": [
                {
                    "mode": "server",
                    "documentation": "Read-only. One eca-rule PlanDefinition per CDS service, generated from the "
                    "loaded rule base.",
                    "resource": [
                        {
                            "type": "PlanDefinition",
                            "interaction": [{"code": "read"}, {"code": "search-type"}],
                            "searchParam": search_params,
                        },
                        {
                            "type": "CodeSystem",
                            "interaction": [{"code": "read"}],
                            "documentation": "CodeSystem/override-reason: the reasons a clinician can give when "
                            "overriding a card (Card.overrideReasons).",
                        },
                    ],
                }
            ],
        }
    )


def _rule_base_date() -> str:
    """The day this instance loaded the rule base it publishes (set once, at the first call)."""
    day: str | None = current_app.extensions.get("spinecds.capability_date")
    if day is None:
        day = datetime.now(UTC).date().isoformat()
        current_app.extensions["spinecds.capability_date"] = day
    return day


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


@bp.get("/CodeSystem/<cs_id>")
def read_codesystem(cs_id: str) -> Response:
    if cs_id != OVERRIDE_REASON_ID:
        raise ApiError(404, f"CodeSystem/{cs_id[:64]} not found")
    state: AppState = current_app.extensions["spinecds"]
    return _fhir(override_reason_codesystem(state.pipeline.base.override_reasons))
