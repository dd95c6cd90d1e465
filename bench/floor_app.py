"""The floor: the least a CDS service can do on our stack, parse the JSON body, answer no cards."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask, Response, jsonify, request

from service.config import Settings


def create_floor_app(
    name: str = "spinecds-bench-floor", on_body: Callable[[dict[str, Any]], dict[str, str]] | None = None
) -> Flask:
    """The floor app; ``on_body`` (the naive path's validation) runs on each parsed body and returns
    response headers to add."""
    app = Flask(name)
    # the same body limit as ours (SPINECDS_MAX_REQUEST_BYTES): the server sizes its request buffer from it
    app.config["MAX_CONTENT_LENGTH"] = Settings.max_request_bytes

    @app.post("/cds-services/<service_id>")
    def call_service(service_id: str) -> Response:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return Response('{"resourceType":"OperationOutcome"}', 400, mimetype="application/json")
        response = jsonify({"cards": []})
        if on_body is not None:
            response.headers.update(on_body(body))
        return response

    @app.get("/health/ready")
    def ready() -> Response:
        return jsonify({"status": "ready"})

    return app
