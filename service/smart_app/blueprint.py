"""``/smart``: the SMART on FHIR app that records what the cards ask for (docs/smart-app.md).

``/smart/launch`` is the EHR launch URL (``iss`` + ``launch``); it refuses, with a page and no
redirect, when either is missing or ``iss`` is not an allowlisted FHIR server
(``SPINECDS_FHIR_SERVER_ALLOWLIST``). ``/smart/app`` is the redirect URI. The pages are static
files and the vendored fhirclient library; the only hosts they may connect to are this service
and the allowlisted FHIR servers (Content-Security-Policy). ``/smart/api/check`` validates the
Observations a form is about to write; nothing the app sends is logged.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, current_app, jsonify, render_template, request, send_from_directory

from service.fhir.allowlist import FhirServerAllowlist, is_loopback
from service.state import AppState

from .check import CheckContext, check_form
from .forms import forms_document

STATIC_DIR = Path(__file__).resolve().parent / "static"
SCOPE = "launch patient/Patient.r patient/Observation.rs patient/Observation.c patient/Condition.rs openid fhirUser"

bp = Blueprint(
    "smart_app",
    __name__,
    url_prefix="/smart",
    static_folder=str(STATIC_DIR),
    static_url_path="/static",
    template_folder="templates",
)


def _state() -> AppState:
    state: AppState = current_app.extensions["spinecds"]
    return state


def _allowlist() -> FhirServerAllowlist:
    return _state().pipeline.limits.allowlist


def fhir_origins(allowlist: FhirServerAllowlist) -> list[str]:
    """CSP sources for the allowlisted FHIR servers (https; http too for loopback, as the allowlist allows)."""
    out = []
    for host, port in sorted(allowlist.entries, key=lambda e: (e[0], e[1] or 0)):
        shown = f"[{host}]" if ":" in host else host
        schemes = ["https", "http"] if is_loopback(host) else ["https"]
        out += [f"{scheme}://{shown}:{port if port is not None else '*'}" for scheme in schemes]
    return out


@bp.after_request
def _headers(response: Response) -> Response:
    ehr = " ".join(fhir_origins(_allowlist()))
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"connect-src 'self' {ehr}; frame-ancestors 'self' {ehr}; base-uri 'none'; form-action 'none'"
    ).replace("  ", " ")
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"  # the authorization code never leaves in a Referer
    response.headers["Cache-Control"] = "no-store"
    return response


def _refuse(reason: str) -> tuple[str, int]:
    return render_template("refused.html", reason=reason), 400


@bp.get("/launch")
def launch() -> Response | tuple[str, int]:
    iss, launch_id = request.args.get("iss", ""), request.args.get("launch", "")
    if not iss or not launch_id:
        return _refuse(
            "This app must be launched from the EHR: the launch URL needs the iss and launch parameters "
            "(SMART App Launch, EHR launch). Open it from the card's “Record the missing items” link."
        )
    refusal = _allowlist().refusal(iss)
    if refusal is not None:
        return _refuse(
            f"The EHR's FHIR server (iss) cannot be used: {refusal}. An administrator adds its host to "
            "SPINECDS_FHIR_SERVER_ALLOWLIST."
        )
    return send_from_directory(STATIC_DIR, "launch.html", max_age=0)


@bp.get("/app")
def app_page() -> Response:
    return send_from_directory(STATIC_DIR, "app.html", max_age=0)


@bp.get("/api/config")
def config() -> Response:
    settings = _state().settings
    return jsonify({"clientId": settings.smart_client_id, "scope": SCOPE, "redirectUri": "app", **forms_document()})


@bp.post("/api/check")
def check() -> Response:
    pipeline = _state().pipeline
    ctx = CheckContext(
        vocab=pipeline.vocab,
        thresholds={k: float(v["value"]) for k, v in pipeline.base.thresholds.items()},
        facts=pipeline.base.facts,
        now=pipeline.clock(),
        profiles_dir=_state().settings.profiles_dir,
    )
    return jsonify(check_form(request.get_json(silent=True), ctx))
