"""Validation of a CDS Hooks 2.0.1 service request: clear 400s, never a silent wrong answer."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from service.errors import ApiError

from .definitions import REQUIRED_CONTEXT, ServiceDefinition

# FHIR R4 id (http://hl7.org/fhir/R4/datatypes.html#id): what may be substituted into a FHIR URL
FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
ID_CONTEXT = ("patientId", "encounterId")


@dataclass(frozen=True)
class HookRequest:
    hook: str
    hook_instance: str
    context: Mapping[str, Any]
    fhir_server: str | None
    access_token: str | None
    prefetch: Mapping[str, Any]
    extension: Mapping[str, Any] = field(default_factory=dict)

    @property
    def patient_id(self) -> str | None:
        value = self.context.get("patientId")
        return value if isinstance(value, str) else None


def parse_hook_request(body: Any, service: ServiceDefinition) -> HookRequest:
    problems: list[str] = []
    if not isinstance(body, Mapping):
        raise ApiError(400, "request body must be a JSON object")
    hook = body.get("hook")
    if not isinstance(hook, str) or not hook:
        problems.append("hook: required string")
    elif hook != service.hook:
        problems.append(f"hook: service {service.id} answers {service.hook!r}, not {hook!r}")
    instance = body.get("hookInstance")
    if not isinstance(instance, str) or not instance.strip() or len(instance) > 256 or not instance.isprintable():
        problems.append("hookInstance: required non-empty string (a UUID)")
    context = body.get("context")
    if not isinstance(context, Mapping):
        problems.append("context: required object")
        context = {}
    else:
        problems += _context_problems(service.hook, context)
    server = body.get("fhirServer")
    if server is not None and not _absolute_url(server):
        problems.append("fhirServer: must be an absolute http(s) URL")
    auth = body.get("fhirAuthorization")
    token: str | None = None
    if auth is not None:
        if server is None:
            problems.append("fhirAuthorization: requires fhirServer (cds-r-1)")
        token, auth_problems = _authorization(auth)
        problems += auth_problems
    prefetch = body.get("prefetch", {})
    if prefetch is None:
        prefetch = {}
    if not isinstance(prefetch, Mapping):
        problems.append("prefetch: must be an object of keys to FHIR resources or null")
        prefetch = {}
    else:
        for key, value in prefetch.items():
            if value is not None and not isinstance(value, Mapping):
                problems.append(f"prefetch.{key}: must be a FHIR resource, a Bundle or null")
    extension = body.get("extension", {})
    if not isinstance(extension, Mapping):
        problems.append("extension: must be an object")
        extension = {}
    if problems:
        raise ApiError(400, "invalid CDS Hooks request", issues=problems)
    assert isinstance(hook, str) and isinstance(instance, str)
    return HookRequest(hook, instance, context, server if isinstance(server, str) else None, token, prefetch, extension)


def _context_problems(hook: str, context: Mapping[str, Any]) -> list[str]:
    problems = []
    for name in REQUIRED_CONTEXT.get(hook, ()):
        if name not in context:
            problems.append(f"context.{name}: required for {hook}")
    for name in ("userId", "patientId", "encounterId"):
        if name in context and (not isinstance(context[name], str) or not context[name]):
            problems.append(f"context.{name}: must be a non-empty string")
        elif name in ID_CONTEXT and name in context and not FHIR_ID.fullmatch(context[name]):
            # it goes into FHIR URLs: never a path, a second parameter or a fragment (the value is not echoed)
            problems.append(f"context.{name}: must be a FHIR id (1-64 of A-Z a-z 0-9 - .)")
    if "draftOrders" in context:
        orders = context["draftOrders"]
        if not isinstance(orders, Mapping) or orders.get("resourceType") != "Bundle":
            problems.append("context.draftOrders: must be a FHIR Bundle")
    if "selections" in context:
        sel = context["selections"]
        if not isinstance(sel, list) or not all(isinstance(s, str) for s in sel):
            problems.append("context.selections: must be an array of references")
    return problems


def _authorization(auth: Any) -> tuple[str | None, list[str]]:
    if not isinstance(auth, Mapping):
        return None, ["fhirAuthorization: must be an object"]
    problems = []
    token = auth.get("access_token")
    if not isinstance(token, str) or not token:
        problems.append("fhirAuthorization.access_token: required string")
    if auth.get("token_type") != "Bearer":
        problems.append("fhirAuthorization.token_type: must be 'Bearer'")
    expires = auth.get("expires_in")
    if not isinstance(expires, int) or isinstance(expires, bool) or expires < 0:
        problems.append("fhirAuthorization.expires_in: required non-negative integer")
    for name in ("scope", "subject"):
        if not isinstance(auth.get(name), str) or not auth.get(name):
            problems.append(f"fhirAuthorization.{name}: required string")
    return (token if isinstance(token, str) else None), problems


def _absolute_url(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    parsed = urlparse(value)
    return parsed.scheme in {"http", "https"} and bool(parsed.netloc)
