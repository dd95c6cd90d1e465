"""Application factory: ``create_app(settings)``."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from flask import Flask, Response, request

from service.cds.blueprint import bp as cds_bp
from service.cds.pipeline import Pipeline
from service.config import ConfigError, Settings
from service.db import init_db, make_engine
from service.engine.ruleset import load_rulebase
from service.engine.runtime import Engine
from service.errors import register_error_handlers
from service.facts.vocabulary import Vocabulary
from service.fhir.client import FetchLimits
from service.fhir.pool import preload_models
from service.ops.blueprint import bp as ops_bp
from service.state import AppState

log = logging.getLogger("spinecds")


def _threshold_overrides(path: str) -> dict[str, Any]:
    if not path:
        return {}
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ConfigError("SPINECDS_THRESHOLDS_FILE: must contain a mapping of threshold name to number")
    return data


def create_app(
    settings: Settings | Mapping[str, Any] | None = None, clock: Callable[[], datetime] | None = None
) -> Flask:
    if settings is None:
        settings = Settings.from_env()
    elif not isinstance(settings, Settings):
        settings = Settings.from_env().with_overrides(settings)
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    base = load_rulebase(settings.rules_dir, _threshold_overrides(settings.thresholds_file))
    engine = Engine(base)
    vocab = Vocabulary.load(settings.profiles_dir)
    preload_models()
    limits = FetchLimits(
        settings.fhir_connect_timeout,
        settings.fhir_read_timeout,
        settings.fhir_max_pages,
        settings.fhir_max_response_bytes,
    )
    pipeline = Pipeline(
        engine,
        vocab,
        limits,
        settings.spine_surgical_backup,
        settings.public_base_url,
        clock or (lambda: datetime.now(UTC)),
    )
    db = make_engine(settings.database_url)
    sessions = init_db(db)

    app = Flask("spinecds")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["spinecds"] = AppState(settings, pipeline, db, sessions)
    register_error_handlers(app)
    app.register_blueprint(cds_bp)
    app.register_blueprint(ops_bp)
    _cors(app, settings.cors_origins)
    log.info(
        "spinecds ready: %d rules in %d strata (rule base %s), database %s",
        len(base.rule_ids),
        base.strata,
        base.digest,
        settings.database_url.split(":", 1)[0],
    )
    return app


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
