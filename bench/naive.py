"""The naive path: parse the body, then validate every prefetch resource with fhir.resources (R4B).

This is what a service that turns the whole prefetch into fhir.resources models would pay before
reading a single fact; it answers no cards.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from flask import Flask, Response, jsonify, request
from pydantic import ValidationError


def prefetch_resources(body: dict[str, Any]) -> Iterator[dict[str, Any]]:
    prefetch = body.get("prefetch") or {}
    for value in prefetch.values():
        if not isinstance(value, dict):
            continue
        if value.get("resourceType") == "Bundle":
            for entry in value.get("entry") or []:
                if isinstance(entry, dict) and isinstance(entry.get("resource"), dict):
                    yield entry["resource"]
        else:
            yield value


def validate_all(body: dict[str, Any]) -> tuple[int, int]:
    """(valid, invalid) resource counts after full R4B validation of every resource."""
    valid = invalid = 0
    for resource in prefetch_resources(body):
        try:
            get_fhir_model_class(str(resource.get("resourceType"))).model_validate(resource)
            valid += 1
        except (ValidationError, ValueError, KeyError, TypeError):
            invalid += 1
    return valid, invalid


def create_naive_app() -> Flask:
    app = Flask("spinecds-bench-naive")

    @app.post("/cds-services/<service_id>")
    def call_service(service_id: str) -> Response:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return Response('{"resourceType":"OperationOutcome"}', 400, mimetype="application/json")
        valid, invalid = validate_all(body)
        response = jsonify({"cards": []})
        response.headers["X-Bench-Validated"] = f"{valid} valid, {invalid} invalid"
        return response

    @app.get("/health/ready")
    def ready() -> Response:
        return jsonify({"status": "ready"})

    return app
