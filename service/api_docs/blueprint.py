"""``GET /openapi.json``: the OpenAPI document (``openapi.yaml`` next to this module) as JSON."""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import yaml
from flask import Blueprint, Response, jsonify

bp = Blueprint("api_docs", __name__)


@cache
def openapi_document() -> dict[str, Any]:
    text = resources.files(__package__).joinpath("openapi.yaml").read_text(encoding="utf-8")
    document: dict[str, Any] = yaml.safe_load(text)
    return document


@bp.get("/openapi.json")
def openapi() -> Response:
    return jsonify(openapi_document())
