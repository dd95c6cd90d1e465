"""Prefetch resolution: use what the EHR sent, fetch what is absent, never refetch ``null``.

A key is *complete* when its data are all here: a resource, a Bundle whose ``next`` pages were
followed, or ``null`` (the EHR says: no data). Only complete categories may be read as closed
world by the fact extractor (absence of a code = false); anything partial stays unknown.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextvars import copy_context
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from service.fhir.client import FetchError, FetchLimits, FhirClient, has_next
from service.fhir.pool import ResourcePool
from service.ops.metrics import timed_fetch

from .definitions import PREFETCH, REQUIRED_KEYS
from .request import HookRequest

log = logging.getLogger("spinecds.prefetch")
TOKEN = re.compile(r"\{\{\s*([^}]+?)\s*\}\}")
USER_TOKENS = {
    "userPractitionerId": "Practitioner",
    "userPractitionerRoleId": "PractitionerRole",
    "userPatientId": "Patient",
    "userRelatedPersonId": "RelatedPerson",
}


class PrefetchUnavailable(Exception):
    def __init__(self, keys: list[str], reasons: list[str]) -> None:
        super().__init__(", ".join(keys))
        self.keys = keys
        self.reasons = reasons


@dataclass
class PrefetchResult:
    pool: ResourcePool
    complete: set[str] = field(default_factory=set)
    fetched: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def resolve_template(template: str, request: HookRequest) -> str | None:
    """Replace 2.0 prefetch tokens; None when a token cannot be resolved."""
    missing = False

    def sub(match: re.Match[str]) -> str:
        nonlocal missing
        token = match.group(1)
        if token.startswith("context."):
            value = request.context.get(token.removeprefix("context."))
            if isinstance(value, str | int) and not isinstance(value, bool):
                return str(value)
        elif token in USER_TOKENS:
            user = request.context.get("userId")
            prefix = USER_TOKENS[token] + "/"
            if isinstance(user, str) and user.startswith(prefix):
                return user.removeprefix(prefix)
        missing = True
        return ""

    resolved = TOKEN.sub(sub, template)
    return None if missing else resolved


def _is_outcome(value: Mapping[str, Any]) -> bool:
    if value.get("resourceType") == "OperationOutcome":
        return True
    entries = value.get("entry") if value.get("resourceType") == "Bundle" else None
    return isinstance(entries, list) and any(
        isinstance(e, Mapping)
        and isinstance(e.get("resource"), Mapping)
        and e["resource"].get("resourceType") == "OperationOutcome"
        for e in entries
    )


def gather(
    request: HookRequest, limits: FetchLimits, relevant: Callable[[str, Mapping[str, Any]], bool] | None = None
) -> PrefetchResult:
    pool = ResourcePool(relevant=relevant)
    result = PrefetchResult(pool)
    refusal = limits.allowlist.refusal(request.fhir_server) if request.fhir_server else None
    if refusal is not None:  # SPINECDS_FHIR_SERVER_ALLOWLIST: never called, the token goes nowhere
        log.warning("fhirServer not called: %s", refusal)
    client = (
        FhirClient(request.fhir_server, request.access_token, limits) if request.fhir_server and not refusal else None
    )
    to_fetch: dict[str, str] = {}
    for key, value in request.prefetch.items():
        if key not in PREFETCH:
            if value is not None:
                pool.add_payload(value, f"prefetch.{key}")  # extra data the EHR chose to send
            continue
        if value is None:
            result.complete.add(key)
            continue
        if _is_outcome(value):
            pool.add_payload(value, f"prefetch.{key}")
            result.failed[key] = "the EHR reported an error for this prefetch"
        elif has_next(value):
            if client is None:
                pool.add_payload(value, f"prefetch.{key}")
                result.failed[key] = (
                    f"paginated prefetch; fhirServer not called ({refusal})"
                    if refusal
                    else "paginated prefetch without fhirServer to follow next"
                )
                continue
            try:
                pool.add_payload(client.complete_bundle(dict(value)), f"prefetch.{key}")
                result.complete.add(key)
            except FetchError as exc:
                pool.add_payload(value, f"prefetch.{key}")
                result.failed[key] = str(exc)
            continue
        else:
            pool.add_payload(value, f"prefetch.{key}")
            result.complete.add(key)
            continue
    for key, template in PREFETCH.items():
        if key in result.complete or key in to_fetch:
            continue
        query = resolve_template(template, request)
        if client is None or query is None:
            result.failed.setdefault(
                key,
                f"not in prefetch; fhirServer not called ({refusal})"
                if refusal
                else "not in prefetch and no fhirServer/context to fetch it",
            )
            continue
        to_fetch[key] = query
    if client is not None and to_fetch:
        with ThreadPoolExecutor(max_workers=min(4, len(to_fetch))) as executor:
            futures = {
                key: executor.submit(copy_context().run, timed_fetch, key, partial(client.read, query))
                for key, query in to_fetch.items()
            }
            for key, future in futures.items():
                try:
                    data = future.result()
                except FetchError as exc:
                    result.failed[key] = str(exc)
                    continue
                pool.add_payload(data, f"fetched.{key}")
                result.complete.add(key)
                result.failed.pop(key, None)
                result.fetched.append(key)
    missing = [k for k in REQUIRED_KEYS if k not in result.complete]
    if missing:
        raise PrefetchUnavailable(missing, [f"{k}: {result.failed.get(k, 'unavailable')}" for k in missing])
    if result.failed:
        log.info("prefetch categories unavailable: %s", ", ".join(sorted(result.failed)))
    return result
