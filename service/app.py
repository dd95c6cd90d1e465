"""Application factory: ``create_app(settings)``."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, g, request

from service.api_docs.blueprint import bp as api_docs_bp
from service.auth.gate import install_auth
from service.cds.assemble import build_pipeline
from service.cds.audit import CardAudit
from service.cds.blueprint import bp as cds_bp
from service.config import Settings
from service.console.blueprint import bp as console_bp
from service.db import SchemaSetup, make_audit_engine, make_engine
from service.engine.build import engine_description, require_patched_engine
from service.errors import register_error_handlers
from service.fhir.allowlist import FhirServerAllowlist
from service.fhir_api.blueprint import bp as fhir_api_bp
from service.ops import metrics
from service.ops.blueprint import bp as ops_bp
from service.ops.logging import REQUEST_ID_HEADER, configure_logging, request_id_from, set_request_id
from service.smart_app.blueprint import bp as smart_app_bp
from service.state import AppState

log = logging.getLogger("spinecds")


def create_app(
    settings: Settings | Mapping[str, Any] | None = None, clock: Callable[[], datetime] | None = None
) -> Flask:
    if settings is None:
        settings = Settings.from_env()
    elif not isinstance(settings, Settings):
        settings = Settings.from_env().with_overrides(settings)
    configure_logging(settings.log_level)
    engine_version = require_patched_engine()  # the published durable-rules crashes: refuse it
    pipeline = build_pipeline(settings, clock)  # may call the allowlisted fhirServers
    base = pipeline.base
    _warn_fhir_allowlist(pipeline.limits.allowlist)
    db = make_engine(settings.database_url, settings.database_timeout)
    schema = SchemaSetup(db)
    schema.ensure()  # a database down at start is retried (readiness stays 503 until then), never fatal

    app = Flask("spinecds")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    audit = CardAudit(make_audit_engine(settings.database_url, settings.database_timeout, db))
    app.extensions["spinecds"] = AppState(settings, pipeline, db, schema, audit)
    register_error_handlers(app)
    app.register_blueprint(cds_bp)
    app.register_blueprint(ops_bp)
    app.register_blueprint(fhir_api_bp)  # /fhir/PlanDefinition (docs/conformance.md)
    if settings.console == "enabled":
        app.register_blueprint(console_bp)  # /console (docs/console.md)
    app.register_blueprint(api_docs_bp)
    app.register_blueprint(smart_app_bp)  # /smart (docs/smart-app.md)
    _cors(app, settings.cors_origins)
    _request_context(app)
    install_auth(app, settings, db, clock or (lambda: datetime.now(UTC)))  # docs/security.md
    log.info(
        "spinecds app loaded: %d rules in %d strata (rule base %s), database %s, engine %s; "
        "serving once ready (GET /health/ready says when)",
        len(base.rule_ids),
        base.strata,
        base.digest,
        settings.database_url.split(":", 1)[0],
        engine_description(engine_version),
    )
    return app


def _warn_fhir_allowlist(allowlist: FhirServerAllowlist) -> None:
    if allowlist.empty:
        log.warning(
            "SPINECDS_FHIR_SERVER_ALLOWLIST is empty: no fhirServer will be called; requests are answered from "
            "prefetch only (412 when required data are missing)"
        )
    else:
        log.info("fhirServer calls allowed to: %s", allowlist.describe())


def _request_context(app: Flask) -> None:
    """Request id (``X-Request-Id`` in and out), one access log line and HTTP metrics per request."""
    access = logging.getLogger("spinecds.access")

    def start() -> None:
        request_id = request_id_from(request.headers.get(REQUEST_ID_HEADER))
        g.request_id = request_id
        g.started = time.perf_counter()
        set_request_id(request_id)

    app.before_request_funcs.setdefault(None, []).insert(0, start)  # first, so every later log line has the id

    @app.after_request
    def finish(response: Response) -> Response:
        request_id = g.get("request_id") or request_id_from(None)
        response.headers[REQUEST_ID_HEADER] = request_id
        seconds = time.perf_counter() - g.get("started", time.perf_counter())
        route = request.url_rule.rule if request.url_rule is not None else "unmatched"
        metrics.observe_http(request.method, route, response.status_code, seconds)
        access.info("%s %s %d %.1fms", request.method, route, response.status_code, seconds * 1000)
        return response

    @app.teardown_request
    def forget(_exc: BaseException | None) -> None:
        set_request_id(None)


def _cors(app: Flask, origins: str) -> None:
    allowed = {o.strip() for o in origins.split(",") if o.strip()}

    @app.after_request
    def add_cors(response: Response) -> Response:
        origin = request.headers.get("Origin")
        if origin and ("*" in allowed or origin in allowed):
            response.headers["Access-Control-Allow-Origin"] = "*" if "*" in allowed else origin
            response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
            response.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
            response.headers["Access-Control-Max-Age"] = "600"
            if "*" not in allowed:
                response.headers["Vary"] = "Origin"
        return response
