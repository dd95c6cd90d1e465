"""Every error is JSON: a FHIR OperationOutcome with the right status, never HTML or a trace."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

log = logging.getLogger("spinecds.errors")

ISSUE_CODES = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    406: "not-supported",
    409: "conflict",
    412: "incomplete",
    413: "too-costly",
    415: "not-supported",
    422: "invalid",
    429: "throttled",
    503: "transient",
}


MAX_ISSUES = 50  # issues listed in one OperationOutcome


class ApiError(Exception):
    """Raised anywhere in a request to answer with an OperationOutcome."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        issues: list[str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.issues = issues or []
        self.headers = headers or {}


def operation_outcome(status: int, message: str, details: list[str] | None = None) -> dict[str, Any]:
    severity = "error" if status < 500 else "fatal"
    code = ISSUE_CODES.get(status, "exception")
    issues = [{"severity": severity, "code": code, "diagnostics": message}]
    details = details or []
    if len(details) > MAX_ISSUES:  # a hostile array of a million bad items gets a bounded answer
        details = details[:MAX_ISSUES] + [f"... and {len(details) - MAX_ISSUES} more problems"]
    issues += [{"severity": "error", "code": code, "diagnostics": d} for d in details]
    return {"resourceType": "OperationOutcome", "issue": issues}


def error_response(status: int, message: str, details: list[str] | None = None) -> Response:
    response = jsonify(operation_outcome(status, message, details))
    response.status_code = status
    response.mimetype = "application/fhir+json"
    return response


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api(err: ApiError) -> Response:
        response = error_response(err.status, err.message, err.issues)
        response.headers.update(err.headers)
        return response

    @app.errorhandler(HTTPException)
    def _http(err: HTTPException) -> Response:
        status = err.code or 500
        response = error_response(status, err.description or err.name)
        valid_methods = getattr(err, "valid_methods", None)
        if status == 405 and valid_methods:
            response.headers["Allow"] = ", ".join(valid_methods)
        return response

    @app.errorhandler(Exception)
    def _unexpected(err: Exception) -> Response:
        log.exception("unhandled error (%s)", type(err).__name__)
        return error_response(500, "internal error; the incident was logged without patient data")
