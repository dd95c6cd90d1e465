"""The floor: the least a CDS service can do on our stack, parse the JSON body, answer no cards."""

from __future__ import annotations

from flask import Flask, Response, jsonify, request


def create_floor_app() -> Flask:
    app = Flask("spinecds-bench-floor")

    @app.post("/cds-services/<service_id>")
    def call_service(service_id: str) -> Response:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return Response('{"resourceType":"OperationOutcome"}', 400, mimetype="application/json")
        return jsonify({"cards": []})

    @app.get("/health/ready")
    def ready() -> Response:
        return jsonify({"status": "ready"})

    return app
