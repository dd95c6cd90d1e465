"""``/console``: static pages for integrators and clinicians, and the small JSON API they read.

The pages call the service's own endpoints (discovery, service calls, feedback, /rules) exactly as
an EHR would; ``/console/api`` adds only what the service does not offer: the catalogue with the
thresholds in force, sample patients, Bundle -> CDS Hooks request, and feedback rates per rule.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from flask import Blueprint, Response, current_app, jsonify, send_from_directory

from service.cds.request_builder import BadInput, subjects_from_json
from service.cds.strict_json import json_request_body
from service.engine.catalogue import rule_catalogue
from service.errors import ApiError
from service.state import AppState

from .feedback_stats import feedback_by_rule
from .samples import load_sample, sample_entry, sample_index

STATIC_DIR = Path(__file__).resolve().parent / "static"
# the console talks only to this service: no CDN, no inline script, no framing
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)

bp = Blueprint("console", __name__, url_prefix="/console", static_folder=str(STATIC_DIR), static_url_path="/static")


def _state() -> AppState:
    state: AppState = current_app.extensions["spinecds"]
    return state


@bp.after_request
def _headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers.setdefault("Cache-Control", "no-store")
    return response


@bp.get("/")
@bp.get("")
def index() -> Response:
    return send_from_directory(STATIC_DIR, "index.html", max_age=0)


@bp.get("/api/rules")
def rules() -> Response:
    return jsonify(rule_catalogue(_state().pipeline.base))


@bp.get("/api/samples")
def samples() -> Response:
    return jsonify({"samples": [{k: s[k] for k in ("id", "title", "hook", "source")} for s in sample_index()]})


@bp.get("/api/samples/<sample_id>/request")
def sample_request(sample_id: str) -> Response:
    entry = sample_entry(sample_id)
    if entry is None:
        raise ApiError(404, f"no sample {sample_id!r}; see GET /console/api/samples")
    data = load_sample(entry, _state().pipeline.clock())
    return jsonify(_requests_for(data, entry["hook"], entry["title"]))


@bp.post("/api/requests")
def requests_from_data() -> Response:
    """A pasted FHIR Bundle, case file or CDS Hooks request -> the CDS Hooks request(s) to send."""
    body = json_request_body()  # the limits of the CDS endpoints: size, depth, strict JSON
    if not isinstance(body, dict) or "data" not in body:
        raise ApiError(400, 'send {"data": <FHIR Bundle or CDS Hooks request>, "hook": "patient-view"}')
    hook = body.get("hook", "patient-view")
    if not isinstance(hook, str):
        raise ApiError(400, "hook: must be a string")
    patients = _patient_count(body["data"])
    if patients > MAX_TRY_IT_PATIENTS:
        raise ApiError(
            413,
            f"pasted data hold {patients} patients; the console builds requests for at most "
            f"{MAX_TRY_IT_PATIENTS} (use `spinecds evaluate` for a whole export)",
        )
    return _bounded_json(_requests_for(body["data"], hook, "pasted data"))


# The try-it API turns one pasted record into the requests an EHR would send: a handful of patients.
# Each answer is bounded like the request it stands for (SPINECDS_MAX_REQUEST_BYTES in total), so a
# small body naming many patients, or orders shared by all, cannot be amplified into a huge answer.
MAX_TRY_IT_PATIENTS = 20


def _patient_count(data: Any) -> int:
    """Patients in a pasted Bundle or case file, counted before any request is built."""
    if not isinstance(data, dict):
        return 0
    if data.get("resourceType") == "Bundle" and isinstance(data.get("entry"), list):
        items = [e.get("resource") for e in data["entry"] if isinstance(e, dict)]
    elif isinstance(data.get("resources"), list):
        items = data["resources"]
    else:
        return 0
    return sum(1 for r in items if isinstance(r, dict) and r.get("resourceType") == "Patient")


def _bounded_json(answer: dict[str, Any]) -> Response:
    """``answer`` as JSON, 413 as soon as its requests add up to more than SPINECDS_MAX_REQUEST_BYTES."""
    limit = int(current_app.config["MAX_CONTENT_LENGTH"])
    parts: list[bytes] = []
    size = 0
    for item in answer["requests"]:
        part = orjson.dumps(item)
        size += len(part)
        if size > limit:
            raise ApiError(413, f"the requests built from the pasted data exceed the request limit of {limit} bytes")
        parts.append(part)
    return Response(b'{"requests":[' + b",".join(parts) + b"]}", mimetype="application/json")


def _requests_for(data: Any, hook: str, label: str) -> dict[str, Any]:
    try:
        subjects = subjects_from_json(data, label, hook)
    except BadInput as exc:
        raise ApiError(400, str(exc)) from exc
    usable = [s for s in subjects if s.body is not None]
    if not usable:
        raise ApiError(400, f"{label}: {subjects[0].error if subjects else 'nothing to evaluate'}")
    return {
        "requests": [{"label": s.label, "service": s.service_id, "request": s.body} for s in usable],
    }


@bp.get("/api/feedback-stats")
def feedback_stats() -> Response:
    with _state().db.connect() as conn:
        return jsonify(feedback_by_rule(conn))
