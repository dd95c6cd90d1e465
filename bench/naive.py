"""The naive path: parse the body, then validate every prefetch resource with fhir.resources (R4B).

This is what a service that turns the whole prefetch into fhir.resources models would pay before
reading a single fact; it answers no cards.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from flask import Flask
from pydantic import ValidationError

from bench.floor_app import create_floor_app


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
    """The floor app, plus full validation of every prefetch resource on each call."""

    def validated(body: dict[str, Any]) -> dict[str, str]:
        valid, invalid = validate_all(body)
        return {"X-Bench-Validated": f"{valid} valid, {invalid} invalid"}

    return create_floor_app("spinecds-bench-naive", on_body=validated)
