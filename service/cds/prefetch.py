"""Prefetch resolution: use what the EHR sent, fetch what is absent, never refetch ``null``.

A key is *complete* when its data are all here and all usable: a resource, a Bundle whose ``next``
pages were followed, or ``null`` (the EHR says: no data), with nothing set aside (another patient's
resources, see ``service.fhir.pool``), nothing unreadable (failed R4 validation, an entry without a
resource) and no entry of another type than the search's. Pages received when the rest cannot be
had are read, and the key stays incomplete. Only complete categories may be read as closed world by
the fact extractor (absence of a code = false); anything partial stays unknown, while what was read
from it still counts (a cord compression on a readable Condition, or on page one, is known). What
made a key incomplete is reported per key (``gaps``: counts for the trace; ``gap_lines``: words for
the cards).

412 is only for a request where nothing decisive can be said: a required key (patient,
conditions) of which no data arrived at all.
A ``prefetch.patient`` that is another patient is a contradictory request: 400.

Shapes (a wrong shape is never a complete, empty list): a key whose template is a search must hold
a Bundle of type ``searchset`` or ``collection``; a ``batch-response`` holding exactly one such
Bundle with a 2xx status is unwrapped, one holding a failed search (OperationOutcome / non-2xx) makes
the category unavailable; any other shape (a bare resource, a Bundle of another or no type, a
batch-response of several searches) is a 400 naming the key. Entries of a searchset that are not
of the searched type (and not ``search.mode`` include/outcome) make the category incomplete. A key
whose template is a read (``Patient/{{context.patientId}}``) must hold that resource type (or a
searchset/collection Bundle of exactly one such resource); anything else is a 400.
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
from urllib.parse import quote

from service.errors import ApiError
from service.fhir.client import FetchError, FetchLimits, FhirClient, PartialFetch, has_next
from service.fhir.pool import Intake, ResourcePool
from service.ops.metrics import timed_fetch

from .definitions import KEY_LABELS, PREFETCH, REQUIRED_KEYS, template_type
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
    intake: dict[str, Intake] = field(default_factory=dict)  # per prefetch key: what was read, skipped, set aside
    received: set[str] = field(default_factory=set)  # keys of which data arrived (complete or not)
    partial: dict[str, str] = field(default_factory=dict)  # keys of which only some pages arrived -> why

    def take(self, key: str, payload: Any, where: str) -> Intake:
        """Read one payload of ``key`` into the pool; the key counts as received."""
        intake = self.pool.add_payload(payload, where, _searched(key))
        self.record(key, intake)
        return intake

    def record(self, key: str, intake: Intake) -> None:
        """What one payload of ``key`` gave (``ResourcePool.add_payload``); the key counts as received."""
        self.intake.setdefault(key, Intake()).merge(intake)
        self.received.add(key)

    def take_partial(self, key: str, payload: Any, where: str, reason: str) -> None:
        """Some pages of ``key`` arrived and the rest cannot be had: read them; the key is incomplete."""
        self.take(key, payload, where)
        self.partial[key] = reason
        self.failed[key] = f"only part received: {reason}"
        self.complete.discard(key)

    def settle(self, key: str) -> None:
        """All of ``key`` arrived: complete unless something in it was set aside or unreadable."""
        intake = self.intake.get(key)
        if intake is None or intake.clean:
            self.complete.add(key)
            return
        self.complete.discard(key)
        if intake.other_patient:
            self.failed[key] = "held data not about the context patient (set aside)"

    def gaps(self) -> list[dict[str, Any]]:
        """What made categories incomplete, per key, as counts (for the trace; no identifiers)."""
        out = []
        for key in PREFETCH:
            intake = self.intake.get(key)
            gap: dict[str, Any] = {}
            if intake is not None and intake.skipped:
                gap["skipped"] = dict(sorted(intake.skipped.items()))
            if intake is not None and intake.other_patient:
                gap["otherPatient"] = intake.other_patient
            if key in self.partial:
                gap["partial"] = True
            if intake is not None and intake.wrong_type:
                gap["notOfSearchedType"] = sum(intake.wrong_type.values())
            if gap:
                out.append({"key": key, **gap})
        return out

    def gap_lines(self) -> list[str]:
        """The same in words a clinician reads."""
        lines = []
        for gap in self.gaps():
            label = KEY_LABELS.get(gap["key"], gap["key"])
            if gap.get("partial"):
                lines.append(f"only part of the {label} was received (further pages could not be fetched)")
            for rtype, n in gap.get("skipped", {}).items():
                what = (
                    f"{n} {rtype}{'s' if n != 1 else ''}"
                    if rtype != "unreadable entry"
                    else f"{n} entr{'ies' if n != 1 else 'y'}"
                )
                lines.append(f"{what} could not be read: {_incomplete(label)}")
            if gap.get("notOfSearchedType"):
                n, rtype = gap["notOfSearchedType"], template_type(gap["key"])[0]
                lines.append(
                    f"{n} entr{'ies' if n != 1 else 'y'} in the {label} search result that are not {rtype}s: "
                    f"{_incomplete(label)}"
                )
            if gap.get("otherPatient"):
                n = gap["otherPatient"]
                lines.append(
                    f"{n} resource{'s' if n != 1 else ''} about another patient (or no patient) set aside: "
                    f"{_incomplete(label)}"
                )
        return lines


def _incomplete(label: str) -> str:
    """"the problem list is incomplete", "the lab results are incomplete" (a label ending in -s is plural)."""
    return f"the {label} {'are' if label.endswith('s') else 'is'} incomplete"


def resolve_template(template: str, request: HookRequest) -> str | None:
    """Replace 2.0 prefetch tokens; None when a token cannot be resolved.

    Every substituted value is percent-encoded (no ``/``, ``?``, ``&``, ``,``, ``#`` of a value can
    change the path or add a search parameter); ids are also checked to be FHIR ids when the request
    is parsed (400).
    """
    missing = False

    def sub(match: re.Match[str]) -> str:
        nonlocal missing
        token = match.group(1)
        if token.startswith("context."):
            value = request.context.get(token.removeprefix("context."))
            if isinstance(value, str | int) and not isinstance(value, bool):
                return quote(str(value), safe="")
        elif token in USER_TOKENS:
            user = request.context.get("userId")
            prefix = USER_TOKENS[token] + "/"
            if isinstance(user, str) and user.startswith(prefix):
                return quote(user.removeprefix(prefix), safe="")
        missing = True
        return ""

    resolved = TOKEN.sub(sub, template)
    return None if missing else resolved


def _is_outcome(value: Mapping[str, Any]) -> bool:
    if value.get("resourceType") == "OperationOutcome":
        return True
    entries = value.get("entry") if value.get("resourceType") == "Bundle" else None
    return isinstance(entries, list) and any(
        (type(e) is dict or isinstance(e, Mapping))
        and (type(e.get("resource")) is dict or isinstance(e.get("resource"), Mapping))
        and e["resource"].get("resourceType") == "OperationOutcome"
        for e in entries
    )


SEARCH_BUNDLES = frozenset({"searchset", "collection"})
RESPONSE_BUNDLES = frozenset({"batch-response", "transaction-response"})


def _text(value: Any) -> str | None:
    """A JSON string, or None (hostile input may put lists or objects anywhere)."""
    return value if isinstance(value, str) else None


def _is_bundle(value: Any, types: frozenset[str]) -> bool:
    return isinstance(value, Mapping) and value.get("resourceType") == "Bundle" and _text(value.get("type")) in types


def _shaped(key: str, value: Mapping[str, Any]) -> tuple[Mapping[str, Any], str | None]:
    """The payload to read for ``key`` and a shape problem (400) if it is clearly malformed."""
    rtype, is_search = template_type(key)
    kind = _text(value.get("resourceType"))
    btype = _text(value.get("type")) if kind == "Bundle" else None
    if is_search and kind == "Bundle" and btype in RESPONSE_BUNDLES:
        entries = value.get("entry")
        if not (isinstance(entries, list) and len(entries) == 1 and isinstance(entries[0], Mapping)):
            return value, f"prefetch.{key}: a {btype} Bundle must wrap exactly one {rtype} search"
        inner, response = entries[0].get("resource"), entries[0].get("response")
        status = response.get("status") if isinstance(response, Mapping) else None
        succeeded = status is None or (isinstance(status, str) and status.strip().startswith("2"))
        if isinstance(inner, Mapping) and _is_bundle(inner, SEARCH_BUNDLES) and succeeded:
            if "entry" in inner and not isinstance(inner.get("entry"), list):
                return value, f"prefetch.{key}: Bundle.entry must be an array"
            return inner, None
        if isinstance(inner, Mapping) and inner.get("resourceType") == "OperationOutcome":
            return inner, None  # the EHR's search failed: unavailable, as any OperationOutcome
        return value, f"prefetch.{key}: the {btype} Bundle does not hold a successful {rtype} searchset"
    if kind == "OperationOutcome":
        return value, None
    if kind == "Bundle" and "entry" in value and not isinstance(value.get("entry"), list):
        return value, f"prefetch.{key}: Bundle.entry must be an array"
    if is_search:
        if kind != "Bundle":
            return value, f"prefetch.{key}: the template is a {rtype} search; expected a searchset Bundle, not {kind}"
        if btype not in SEARCH_BUNDLES:
            return value, f"prefetch.{key}: a Bundle of type {btype!r} where a {rtype} searchset belongs"
        return value, None
    if kind == rtype:
        return value, None
    if kind == "Bundle" and btype in SEARCH_BUNDLES:
        entries = value.get("entry")
        found = [e for e in entries if isinstance(e, Mapping)] if isinstance(entries, list) else []
        resource = found[0].get("resource") if len(found) == 1 else None
        if isinstance(resource, Mapping) and resource.get("resourceType") == rtype:
            return value, None
    return value, f"prefetch.{key}: the template reads one {rtype}; expected a {rtype} resource, not {kind}"


def _searched(key: str) -> str | None:
    """The type a search key's template asks for (its entries of another type make it incomplete), else None."""
    rtype, is_search = template_type(key)
    return rtype if is_search else None


def gather(
    request: HookRequest, limits: FetchLimits, relevant: Callable[[str, Mapping[str, Any]], bool] | None = None
) -> PrefetchResult:
    pool = ResourcePool(relevant=relevant, patient_id=request.patient_id)
    result = PrefetchResult(pool)
    refusal = limits.allowlist.refusal(request.fhir_server) if request.fhir_server else None
    if refusal is not None:  # SPINECDS_FHIR_SERVER_ALLOWLIST: never called, the token goes nowhere
        log.warning("fhirServer not called: %s", refusal)
    client = (
        FhirClient(request.fhir_server, request.access_token, limits) if request.fhir_server and not refusal else None
    )
    to_fetch: dict[str, str] = {}
    shapes = {
        key: _shaped(key, value) for key, value in request.prefetch.items() if key in PREFETCH and value is not None
    }
    problems = [problem for _, problem in shapes.values() if problem]
    if problems:
        raise ApiError(400, "prefetch keys hold data of the wrong shape for their templates", issues=problems)
    for key, value in request.prefetch.items():
        if key not in PREFETCH:
            if value is not None:
                pool.add_payload(value, f"prefetch.{key}")  # extra data the EHR chose to send
            continue
        if value is None:
            result.complete.add(key)
            result.received.add(key)
            continue
        value = shapes[key][0]
        if has_next(value) and not _is_outcome(value):
            if client is None:  # the pages received are read; the list stays incomplete
                result.take_partial(
                    key,
                    value,
                    f"prefetch.{key}",
                    f"paginated prefetch; fhirServer not called ({refusal})"
                    if refusal
                    else "paginated prefetch without fhirServer to follow next",
                )
                continue
            try:
                result.take(key, client.complete_bundle(dict(value)), f"prefetch.{key}")
                result.settle(key)
            except PartialFetch as exc:
                result.take_partial(key, exc.bundle, f"prefetch.{key}", str(exc))
            continue
        else:  # one pass over the payload: its resources, its outcome, its entries of another type
            intake = pool.add_payload(value, f"prefetch.{key}", _searched(key))
            if intake.outcome:
                result.failed[key] = "the EHR reported an error for this prefetch"
                continue
            result.record(key, intake)
            if key == "patient" and intake.other_patient:
                raise ApiError(
                    400,
                    "prefetch.patient is not the patient of context.patientId",
                    issues=["prefetch.patient: its id is not context.patientId (or is missing); nothing was evaluated"],
                )
            result.settle(key)
            continue
    for key, template in PREFETCH.items():
        if key in result.received or key in to_fetch:
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
                except PartialFetch as exc:  # some pages arrived: read them, the list stays incomplete
                    result.take_partial(key, exc.bundle, f"fetched.{key}", str(exc))
                    result.fetched.append(key)
                    continue
                except FetchError as exc:
                    result.failed[key] = str(exc)
                    continue
                result.failed.pop(key, None)
                result.take(key, data, f"fetched.{key}")
                result.settle(key)
                result.fetched.append(key)
    _check_required(result)
    if pool.other_patient:  # counts and key names only: no identifiers in logs
        log.warning(
            "set aside %d resources not about the context patient (keys: %s)",
            pool.other_patient,
            ", ".join(g["key"] for g in result.gaps() if g.get("otherPatient")) or "extra keys",
        )
    if result.failed:
        log.info("prefetch categories unavailable: %s", ", ".join(sorted(result.failed)))
    return result


def _check_required(result: PrefetchResult) -> None:
    """412 only when nothing decisive can be said: a required key of which no data arrived at all.

    A required key that arrived but could not all be read (a Patient failing validation, a skipped
    Condition) is evaluated as incomplete: what was read still counts, its negatives are unknown.
    """
    missing = [k for k in REQUIRED_KEYS if k not in result.received]
    reasons = [f"{k}: {result.failed.get(k, 'unavailable')}" for k in missing]
    if missing:
        raise PrefetchUnavailable(missing, reasons)
