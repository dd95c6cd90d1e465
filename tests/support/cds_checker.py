"""Conformance checks for CDS Hooks 2.0 JSON documents, for use in tests.

Every public ``check_*`` function takes a parsed JSON document and returns a list of
violation strings; an empty list means the document conforms. Each violation reads::

    <rule-id>: <json-path>: <message>
    cds-resp-6: cards[0]: suggestions present without selectionBehavior

Findings of warning severity (cds-r-2 and cds-resp-2, whose FSH invariants say
``severity = #warning``, and spec-timestamp-utc) are prefixed ``warning: `` so callers can filter them out
(see :func:`is_warning`, :func:`errors_only` and :func:`rule_id`). The JSON path ``$`` is
the document root. The baseline is CDS Hooks 2.0.1 (``spec/cds-hooks-2.0.1.md``); ids
``cds-*`` are the FHIRPath invariants of the 3.0.0 ballot (``spec/invariants/*.fsh``),
which restate 2.0 rules except cds-resp-7 (``actionSelectionBehavior`` is new in 3.0,
STU). ``spec-*`` ids are checks taken from the 2.0.1 prose.

=========================  ==========================================  ====================================
Rule id                    Spec section (2.0.1 unless noted)           What is checked
=========================  ==========================================  ====================================
spec-no-null               Use of JSON > Null and empty JSON elements  no ``null`` anywhere, except request
                                                                       ``prefetch.<key>`` (Prefetch
                                                                       Template) and array items inside
                                                                       FHIR resources (FHIR JSON arrays)
spec-no-empty              Use of JSON > Null and empty JSON elements  no ``""``, ``[]``, ``{}``, except
                                                                       response ``cards`` and discovery
                                                                       ``services`` (explicitly allowed)
spec-extension             Extensions                                  each CDS Hooks ``extension`` is a
                                                                       JSON object (FHIR resources are
                                                                       skipped: there it is an array)
spec-discovery             Discovery > Response                        object with ``services`` array of
                                                                       objects
spec-service               Discovery > Response                        ``hook``, ``description``, ``id``
                                                                       required strings; ``title``,
                                                                       ``usageRequirements`` strings
spec-service-id            Discovery > Response                        ``id`` URL-safe (RFC 3986 unreserved
                                                                       characters); (id, hook) unique
spec-prefetch-template     Discovery > Response; Prefetch Template     ``prefetch`` is an object of strings
spec-prefetch-token        Prefetch tokens                             ``{{...}}`` holds only
                                                                       ``context.<root-field>`` or a user
                                                                       token; delimiters balanced
spec-request               Calling a CDS Service > HTTP Request        ``hook``, ``hookInstance`` strings,
                                                                       ``context`` object
spec-uuid                  hookInstance; Card Attributes; Suggestion   ``hookInstance`` is a UUID; card and
                                                                       suggestion ``uuid`` strings; with
                                                                       ``require_uuids``: present UUIDs
spec-fhir-server           Calling a CDS Service > HTTP Request        ``fhirServer`` absolute http(s) URL
cds-r-1                    invariant; HTTP Request                     fhirAuthorization => fhirServer
spec-fhir-authorization    Passing the Access Token                    ``access_token``, ``scope``,
                                                                       ``subject`` strings; ``token_type``
                                                                       is ``Bearer``; ``expires_in`` an
                                                                       integer >= 0; ``patient`` string
cds-r-2 (warning)          invariant; Passing the Access Token         ``patient/`` scope => ``patient``
spec-prefetch-value        Providing FHIR Resources to a CDS Service   request ``prefetch`` is an object of
                                                                       FHIR resources or ``null``
spec-response              CDS Service Response > HTTP Response        object with ``cards`` array of
                                                                       objects; ``systemActions`` array
spec-card-summary          Card Attributes                             ``summary`` required, non-blank,
                                                                       fewer than 140 characters
spec-card-detail           Card Attributes                             ``detail`` is a string
spec-indicator             Card Attributes                             ``indicator`` info|warning|critical
spec-source                Card Attributes; Source                     ``source`` object present; ``url``,
                                                                       ``icon`` absolute http(s) URLs
spec-source-label          Source                                      ``source.label`` required string
spec-coding                Data Types > Coding                         ``system``, ``code`` required
                                                                       strings; ``display`` string
spec-selection-behavior    Card Attributes                             ``selectionBehavior`` at-most-one|any
cds-resp-6                 invariant; Card Attributes                  suggestions => selectionBehavior
cds-resp-1                 invariant; Suggestion                       at-most-one => <= 1 isRecommended
spec-suggestion            Suggestion                                  array of objects; ``label`` required
                                                                       string; ``isRecommended`` boolean;
                                                                       ``actions`` array
cds-resp-7                 invariant (3.0 STU element)                 ``actionSelectionBehavior`` in
                                                                       all|any|at-most-one
spec-action                Action; System Action                       object; ``description`` string;
                                                                       ``resourceId`` a relative reference
                                                                       (``Type/id``)
spec-action-type           Action                                      ``type`` in create|update|delete
spec-action-resource       Action                                      create/update => ``resource`` object
                                                                       with ``resourceType``
cds-resp-5                 invariant; Action                           each suggestion action has a
                                                                       ``description`` (optional on
                                                                       systemActions, as 3.0 allows)
cds-resp-2 (warning)       invariant; Action                           delete => ``resourceId``, no
                                                                       ``resource``
cds-resp-4                 invariant; Card Attributes; Coding          each overrideReason has ``display``
spec-link                  Link                                        array of objects; ``label`` string;
                                                                       ``url`` absolute http(s) URL;
                                                                       ``appContext`` string;
                                                                       ``autolaunchable`` boolean
spec-link-type             Link                                        ``type`` in absolute|smart
cds-resp-3                 invariant; Link                             ``appContext`` only on smart links
spec-feedback              Feedback; Suggestion accepted;              non-empty ``feedback`` array;
                           OverrideReason                              ``card`` string;
                                                                       ``acceptedSuggestions`` items
                                                                       ``{"id": str}``; ``overrideReason``
                                                                       object; ``userComment`` string
cds-fb-1                   invariant; Feedback                         ``outcome`` accepted|overridden
cds-fb-2                   invariant; Feedback                         accepted => non-empty
                                                                       acceptedSuggestions
cds-fb-3                   invariant; OverrideReason                   reason or userComment present
spec-timestamp             Feedback                                    ``outcomeTimestamp`` required, an
                                                                       RFC 3339 section 5.6 date-time
spec-timestamp-utc (warn)  Feedback                                    ``outcomeTimestamp`` is UTC
spec-operation-outcome     3.0 Returning OperationOutcome; FHIR R4     resourceType OperationOutcome;
                                                                       non-empty ``issue`` array
spec-issue-severity        FHIR R4 OperationOutcome.issue.severity     fatal|error|warning|information
spec-issue-code            FHIR R4 OperationOutcome.issue.code         an R4 IssueType code
spec-issue-text            3.0 Returning OperationOutcome              ``diagnostics`` or ``details.text``
=========================  ==========================================  ====================================

Deliberately not checked: hook-specific context contents (CDS Hooks Library), the
content of embedded FHIR resources beyond ``resourceType`` and null/empty elements,
Markdown validity of ``detail``, and the https-only rule for ``fhirServer`` (it binds
production data only).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "check_cards_response",
    "check_discovery",
    "check_feedback_request",
    "check_hook_request",
    "check_operation_outcome",
    "errors_only",
    "is_warning",
    "rule_id",
]

JsonPath = tuple[str | int, ...]
JsonObject = Mapping[str, Any]

WARNING_PREFIX = "warning: "

INDICATORS = ("info", "warning", "critical")
SELECTION_BEHAVIORS = ("at-most-one", "any")
ACTION_SELECTION_BEHAVIORS = ("all", "any", "at-most-one")
ACTION_TYPES = ("create", "update", "delete")
LINK_TYPES = ("absolute", "smart")
FEEDBACK_OUTCOMES = ("accepted", "overridden")
USER_TOKENS = frozenset({"userPractitionerId", "userPractitionerRoleId", "userPatientId", "userRelatedPersonId"})
ISSUE_SEVERITIES = ("fatal", "error", "warning", "information")
# http://hl7.org/fhir/R4/codesystem-issue-type.html (FHIR 4.0.1, normative).
ISSUE_TYPES = frozenset(
    {
        "invalid", "structure", "required", "value", "invariant", "security", "login", "unknown",
        "expired", "forbidden", "suppressed", "processing", "not-supported", "duplicate",
        "multiple-matches", "not-found", "deleted", "too-long", "code-invalid", "extension",
        "too-costly", "business-rule", "conflict", "transient", "lock-error", "no-store",
        "exception", "timeout", "incomplete", "throttled", "informational",
    }
)  # fmt: skip

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SERVICE_ID = re.compile(r"[A-Za-z0-9._~-]+")
_TOKEN = re.compile(r"\{\{(.*?)\}\}")
_CONTEXT_TOKEN = re.compile(r"context\.[A-Za-z_][A-Za-z0-9_]*")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_RELATIVE_REFERENCE = re.compile(r"[A-Z][A-Za-z]+/[A-Za-z0-9.-]{1,64}(/_history/[A-Za-z0-9.-]{1,64})?")
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.\d+)?"
    r"(?:(?P<z>[Zz])|(?P<sign>[+-])(?P<oh>\d{2}):(?P<om>\d{2}))"
)


# --------------------------------------------------------------------------- helpers for callers


def is_warning(violation: str) -> bool:
    """True for a finding of warning severity (``warning: <id>: ...``)."""
    return violation.startswith(WARNING_PREFIX)


def errors_only(violations: list[str]) -> list[str]:
    """The violations that are not warnings."""
    return [v for v in violations if not is_warning(v)]


def rule_id(violation: str) -> str:
    """The rule id of a violation, keeping the warning marker: ``cds-resp-6``, ``warning: cds-r-2``."""
    prefix = WARNING_PREFIX if is_warning(violation) else ""
    return prefix + violation.removeprefix(prefix).split(": ", 1)[0]


# --------------------------------------------------------------------------- formatting


def _format_path(path: JsonPath) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _IDENTIFIER.fullmatch(part):
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part)}]"
    return out or "$"


def _error(rule: str, path: JsonPath, message: str) -> str:
    return f"{rule}: {_format_path(path)}: {message}"


def _warning(rule: str, path: JsonPath, message: str) -> str:
    return WARNING_PREFIX + _error(rule, path, message)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object" if isinstance(value, dict) else type(value).__name__


def _is_empty(value: Any) -> bool:
    return isinstance(value, str | list | dict) and len(value) == 0


def _is_absolute_http_url(value: str) -> bool:
    if any(ch.isspace() for ch in value):
        return False
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _is_uuid(value: str) -> bool:
    return _UUID.fullmatch(value) is not None


# --------------------------------------------------------------------------- field checks
# Optional-field helpers ignore ``null``: the document-wide spec-no-null walk reports it once.


def _require_str(obj: JsonObject, key: str, path: JsonPath, rule: str, *, type_rule: str = "") -> list[str]:
    value = obj.get(key)
    if value is None:
        return [_error(rule, path, f"missing required '{key}'")]
    if not isinstance(value, str):
        return [_error(type_rule or rule, path + (key,), f"must be a string, got {_json_type(value)}")]
    if not value.strip():
        return [_error(rule, path + (key,), "must not be blank")]
    return []


def _optional_str(obj: JsonObject, key: str, path: JsonPath, rule: str) -> list[str]:
    value = obj.get(key)
    if value is None or isinstance(value, str):
        return []
    return [_error(rule, path + (key,), f"must be a string, got {_json_type(value)}")]


def _optional_bool(obj: JsonObject, key: str, path: JsonPath, rule: str) -> list[str]:
    value = obj.get(key)
    if value is None or isinstance(value, bool):
        return []
    return [_error(rule, path + (key,), f"must be a boolean, got {_json_type(value)}")]


def _check_enum(
    obj: JsonObject, key: str, allowed: tuple[str, ...], path: JsonPath, rule: str, *, required: bool
) -> list[str]:
    value = obj.get(key)
    if value is None:
        return [_error(rule, path, f"missing required '{key}'")] if required else []
    if isinstance(value, str) and value in allowed:
        return []
    return [_error(rule, path + (key,), f"{json.dumps(value)} is not one of {', '.join(allowed)}")]


def _check_url(obj: JsonObject, key: str, path: JsonPath, rule: str, *, required: bool) -> list[str]:
    value = obj.get(key)
    if value is None:
        return [_error(rule, path, f"missing required '{key}'")] if required else []
    if isinstance(value, str) and _is_absolute_http_url(value):
        return []
    return [_error(rule, path + (key,), f"{json.dumps(value)} is not an absolute http(s) URL")]


def _items(obj: JsonObject, key: str) -> list[Any]:
    """Items of the optional array ``obj[key]``; [] when it is absent or not an array."""
    value = obj.get(key)
    return value if isinstance(value, list) else []


def _array_type_error(obj: JsonObject, key: str, path: JsonPath, rule: str) -> list[str]:
    value = obj.get(key)
    if value is None or isinstance(value, list):
        return []
    return [_error(rule, path + (key,), f"must be an array, got {_json_type(value)}")]


def _not_object(value: Any, path: JsonPath, rule: str, what: str) -> list[str]:
    if isinstance(value, dict):
        return []
    return [_error(rule, path, f"{what} must be a JSON object, got {_json_type(value)}")]


def _check_uuid_field(obj: JsonObject, path: JsonPath, *, required: bool) -> list[str]:
    value = obj.get("uuid")
    if value is None:
        return [_error("spec-uuid", path, "missing 'uuid' (needed for feedback)")] if required else []
    if not isinstance(value, str):
        return [_error("spec-uuid", path + ("uuid",), f"must be a string, got {_json_type(value)}")]
    if required and not _is_uuid(value):
        return [_error("spec-uuid", path + ("uuid",), f"{json.dumps(value)} is not a UUID")]
    return []


def _check_coding(coding: Any, path: JsonPath, *, display_rule: str = "") -> list[str]:
    """A CDS Hooks Coding; ``display_rule`` makes ``display`` required under that rule id."""
    if not isinstance(coding, dict):
        return _not_object(coding, path, "spec-coding", "Coding")
    out = _require_str(coding, "system", path, "spec-coding")
    out += _require_str(coding, "code", path, "spec-coding")
    if display_rule:
        return out + _require_str(coding, "display", path, display_rule, type_rule="spec-coding")
    return out + _optional_str(coding, "display", path, "spec-coding")


# --------------------------------------------------------------------------- document-wide walks


def _walk(node: Any, path: JsonPath = (), in_resource: bool = False) -> Iterator[tuple[JsonPath, Any, bool]]:
    """Yield (path, value, inside-a-FHIR-resource) for every node, depth first."""
    in_resource = in_resource or (isinstance(node, dict) and "resourceType" in node)
    yield path, node, in_resource
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, path + (key,), in_resource)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk(value, path + (index,), in_resource)


def _never(path: JsonPath) -> bool:
    return False


def _check_null_empty(
    doc: Any,
    *,
    empty_ok: frozenset[JsonPath] = frozenset(),
    null_ok: Callable[[JsonPath], bool] = _never,
) -> list[str]:
    out: list[str] = []
    for path, value, in_resource in _walk(doc):
        if value is None:
            fhir_array_item = in_resource and bool(path) and isinstance(path[-1], int)
            if not (fhir_array_item or null_ok(path)):
                out.append(_error("spec-no-null", path, "null is not allowed; omit the element"))
        elif _is_empty(value) and path not in empty_ok:
            out.append(_error("spec-no-empty", path, f"empty {_json_type(value)} is not allowed; omit it"))
    return out


def _check_extensions(doc: Any) -> list[str]:
    out: list[str] = []
    for path, node, in_resource in _walk(doc):
        if in_resource or not isinstance(node, dict):
            continue
        value = node.get("extension")
        if value is not None and not isinstance(value, dict):
            out.append(
                _error("spec-extension", path + ("extension",), f"must be a JSON object, got {_json_type(value)}")
            )
    return out


def _common(
    doc: Any,
    *,
    empty_ok: frozenset[JsonPath] = frozenset(),
    null_ok: Callable[[JsonPath], bool] = _never,
) -> list[str]:
    return _check_null_empty(doc, empty_ok=empty_ok, null_ok=null_ok) + _check_extensions(doc)


# --------------------------------------------------------------------------- discovery


def check_discovery(doc: Any) -> list[str]:
    """Check a discovery response (``GET {baseUrl}/cds-services``)."""
    if not isinstance(doc, dict):
        return _not_object(doc, (), "spec-discovery", "discovery response")
    out = _common(doc, empty_ok=frozenset({("services",)}))
    services = doc.get("services")
    if services is None:
        return out + [_error("spec-discovery", (), "missing required 'services'")]
    if not isinstance(services, list):
        return out + [_error("spec-discovery", ("services",), f"must be an array, got {_json_type(services)}")]
    for index, service in enumerate(services):
        out += _check_service(service, ("services", index))
    return out + _check_unique_services(services)


def _check_service(service: Any, path: JsonPath) -> list[str]:
    if not isinstance(service, dict):
        return _not_object(service, path, "spec-discovery", "service")
    out: list[str] = []
    for key in ("hook", "description", "id"):
        out += _require_str(service, key, path, "spec-service")
    for key in ("title", "usageRequirements"):
        out += _optional_str(service, key, path, "spec-service")
    service_id = service.get("id")
    if isinstance(service_id, str) and service_id and not _SERVICE_ID.fullmatch(service_id):
        out.append(_error("spec-service-id", path + ("id",), f"{json.dumps(service_id)} is not URL-safe"))
    return out + _check_prefetch_templates(service, path)


def _check_unique_services(services: list[Any]) -> list[str]:
    out: list[str] = []
    seen: set[tuple[str, str]] = set()
    for index, service in enumerate(services):
        if not isinstance(service, dict):
            continue
        key = (str(service.get("id")), str(service.get("hook")))
        if key in seen:
            out.append(
                _error(
                    "spec-service-id",
                    ("services", index),
                    f"duplicate service id {key[0]!r} for hook {key[1]!r}",
                )
            )
        seen.add(key)
    return out


def _check_prefetch_templates(service: JsonObject, path: JsonPath) -> list[str]:
    prefetch = service.get("prefetch")
    if prefetch is None:
        return []
    path = path + ("prefetch",)
    if not isinstance(prefetch, dict):
        return _not_object(prefetch, path, "spec-prefetch-template", "prefetch")
    out: list[str] = []
    for key, template in prefetch.items():
        if template is None:
            continue
        if not isinstance(template, str):
            out.append(_error("spec-prefetch-template", path + (key,), f"must be a string, got {_json_type(template)}"))
        else:
            out += _check_prefetch_tokens(template, path + (key,))
    return out


def _check_prefetch_tokens(template: str, path: JsonPath) -> list[str]:
    out: list[str] = []
    for token in _TOKEN.findall(template):
        if token not in USER_TOKENS and not _CONTEXT_TOKEN.fullmatch(token):
            out.append(
                _error(
                    "spec-prefetch-token",
                    path,
                    f"token {{{{{token}}}}} is neither {{{{context.<root-field>}}}} nor a user token",
                )
            )
    remainder = _TOKEN.sub("", template)
    if "{{" in remainder or "}}" in remainder:
        out.append(_error("spec-prefetch-token", path, "unbalanced '{{' / '}}' token delimiters"))
    return out


# --------------------------------------------------------------------------- hook request


def check_hook_request(doc: Any) -> list[str]:
    """Check a service call body (``POST {baseUrl}/cds-services/{id}``)."""
    if not isinstance(doc, dict):
        return _not_object(doc, (), "spec-request", "request")
    out = _common(doc, null_ok=lambda path: len(path) == 2 and path[0] == "prefetch")
    out += _require_str(doc, "hook", (), "spec-request")
    out += _check_hook_instance(doc)
    context = doc.get("context")
    if context is None:
        out.append(_error("spec-request", (), "missing required 'context'"))
    else:
        out += _not_object(context, ("context",), "spec-request", "context")
    out += _check_url(doc, "fhirServer", (), "spec-fhir-server", required=False)
    out += _check_fhir_authorization(doc)
    return out + _check_request_prefetch(doc)


def _check_hook_instance(doc: JsonObject) -> list[str]:
    errors = _require_str(doc, "hookInstance", (), "spec-request")
    value = doc.get("hookInstance")
    if not errors and isinstance(value, str) and not _is_uuid(value):
        errors.append(_error("spec-uuid", ("hookInstance",), f"{json.dumps(value)} is not a UUID"))
    return errors


def _check_fhir_authorization(doc: JsonObject) -> list[str]:
    auth = doc.get("fhirAuthorization")
    if auth is None:
        return []
    out: list[str] = []
    if doc.get("fhirServer") is None:
        out.append(_error("cds-r-1", (), "fhirAuthorization is present without fhirServer"))
    path: JsonPath = ("fhirAuthorization",)
    if not isinstance(auth, dict):
        return out + _not_object(auth, path, "spec-fhir-authorization", "fhirAuthorization")
    for key in ("access_token", "scope", "subject"):
        out += _require_str(auth, key, path, "spec-fhir-authorization")
    out += _check_enum(auth, "token_type", ("Bearer",), path, "spec-fhir-authorization", required=True)
    out += _check_expires_in(auth, path)
    out += _optional_str(auth, "patient", path, "spec-fhir-authorization")
    scope = auth.get("scope")
    if isinstance(scope, str) and "patient/" in scope and auth.get("patient") is None:
        out.append(_warning("cds-r-2", path, "scope grants patient/ scopes but 'patient' is not populated"))
    return out


def _check_expires_in(auth: JsonObject, path: JsonPath) -> list[str]:
    value = auth.get("expires_in")
    if value is None:
        return [_error("spec-fhir-authorization", path, "missing required 'expires_in'")]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return [
            _error(
                "spec-fhir-authorization",
                path + ("expires_in",),
                f"{json.dumps(value)} is not a non-negative integer",
            )
        ]
    return []


def _check_request_prefetch(doc: JsonObject) -> list[str]:
    prefetch = doc.get("prefetch")
    if prefetch is None:
        return []
    if not isinstance(prefetch, dict):
        return _not_object(prefetch, ("prefetch",), "spec-prefetch-value", "prefetch")
    out: list[str] = []
    for key, value in prefetch.items():
        if value is None:
            continue
        resource_type = value.get("resourceType") if isinstance(value, dict) else None
        if not (isinstance(resource_type, str) and resource_type):
            out.append(
                _error(
                    "spec-prefetch-value",
                    ("prefetch", key),
                    "must be a FHIR resource (object with resourceType) or null",
                )
            )
    return out


# --------------------------------------------------------------------------- cards response


def check_cards_response(doc: Any, *, require_uuids: bool = False) -> list[str]:
    """Check a service response body; ``require_uuids`` demands UUIDs on every card and suggestion."""
    if not isinstance(doc, dict):
        return _not_object(doc, (), "spec-response", "response")
    out = _common(doc, empty_ok=frozenset({("cards",)}))
    cards = doc.get("cards")
    if cards is None:
        out.append(_error("spec-response", (), "missing required 'cards'"))
    elif not isinstance(cards, list):
        out.append(_error("spec-response", ("cards",), f"must be an array, got {_json_type(cards)}"))
    else:
        for index, card in enumerate(cards):
            out += _check_card(card, ("cards", index), require_uuids)
    out += _array_type_error(doc, "systemActions", (), "spec-response")
    for index, action in enumerate(_items(doc, "systemActions")):
        out += _check_action(action, ("systemActions", index), description_required=False)
    return out


def _check_card(card: Any, path: JsonPath, require_uuids: bool) -> list[str]:
    if not isinstance(card, dict):
        return _not_object(card, path, "spec-response", "card")
    return [
        *_check_uuid_field(card, path, required=require_uuids),
        *_check_summary(card, path),
        *_optional_str(card, "detail", path, "spec-card-detail"),
        *_check_enum(card, "indicator", INDICATORS, path, "spec-indicator", required=True),
        *_check_source(card, path),
        *_check_suggestions(card, path, require_uuids),
        *_check_override_reasons(card, path),
        *_check_links(card, path),
    ]


def _check_summary(card: JsonObject, path: JsonPath) -> list[str]:
    errors = _require_str(card, "summary", path, "spec-card-summary")
    summary = card.get("summary")
    if not errors and isinstance(summary, str) and len(summary) >= 140:
        errors.append(
            _error(
                "spec-card-summary",
                path + ("summary",),
                f"is {len(summary)} characters; must be fewer than 140",
            )
        )
    return errors


def _check_source(card: JsonObject, path: JsonPath) -> list[str]:
    source = card.get("source")
    if source is None:
        return [_error("spec-source", path, "missing required 'source'")]
    path = path + ("source",)
    if not isinstance(source, dict):
        return _not_object(source, path, "spec-source", "source")
    out = _require_str(source, "label", path, "spec-source-label")
    out += _check_url(source, "url", path, "spec-source", required=False)
    out += _check_url(source, "icon", path, "spec-source", required=False)
    topic = source.get("topic")
    return out if topic is None else out + _check_coding(topic, path + ("topic",))


def _check_suggestions(card: JsonObject, path: JsonPath, require_uuids: bool) -> list[str]:
    suggestions = card.get("suggestions")
    has_suggestions = isinstance(suggestions, list) and len(suggestions) > 0
    out = _check_selection_behavior(card, path, has_suggestions)
    out += _array_type_error(card, "suggestions", path, "spec-suggestion")
    items = _items(card, "suggestions")
    for index, suggestion in enumerate(items):
        out += _check_suggestion(suggestion, path + ("suggestions", index), require_uuids)
    return out + _check_at_most_one(card, items, path)


def _check_selection_behavior(card: JsonObject, path: JsonPath, has_suggestions: bool) -> list[str]:
    if card.get("selectionBehavior") is None:
        return [_error("cds-resp-6", path, "suggestions present without selectionBehavior")] if has_suggestions else []
    return _check_enum(card, "selectionBehavior", SELECTION_BEHAVIORS, path, "spec-selection-behavior", required=False)


def _check_at_most_one(card: JsonObject, suggestions: list[Any], path: JsonPath) -> list[str]:
    if card.get("selectionBehavior") != "at-most-one":
        return []
    recommended = [i for i, s in enumerate(suggestions) if isinstance(s, dict) and s.get("isRecommended") is True]
    if len(recommended) <= 1:
        return []
    return [
        _error(
            "cds-resp-1",
            path,
            f"selectionBehavior is at-most-one but suggestions {recommended} are all isRecommended",
        )
    ]


def _check_suggestion(suggestion: Any, path: JsonPath, require_uuids: bool) -> list[str]:
    if not isinstance(suggestion, dict):
        return _not_object(suggestion, path, "spec-suggestion", "suggestion")
    out = _require_str(suggestion, "label", path, "spec-suggestion")
    out += _check_uuid_field(suggestion, path, required=require_uuids)
    out += _optional_bool(suggestion, "isRecommended", path, "spec-suggestion")
    out += _check_enum(
        suggestion, "actionSelectionBehavior", ACTION_SELECTION_BEHAVIORS, path, "cds-resp-7", required=False
    )
    out += _array_type_error(suggestion, "actions", path, "spec-suggestion")
    for index, action in enumerate(_items(suggestion, "actions")):
        out += _check_action(action, path + ("actions", index), description_required=True)
    return out


def _check_action(action: Any, path: JsonPath, *, description_required: bool) -> list[str]:
    if not isinstance(action, dict):
        return _not_object(action, path, "spec-action", "action")
    out = _check_enum(action, "type", ACTION_TYPES, path, "spec-action-type", required=True)
    if description_required:
        out += _require_str(action, "description", path, "cds-resp-5", type_rule="spec-action")
    else:
        out += _optional_str(action, "description", path, "spec-action")
    out += _check_resource_id(action, path)
    action_type = action.get("type")
    if action_type in ("create", "update"):
        out += _check_action_resource(action, path, action_type)
    elif action_type == "delete":
        out += _check_delete(action, path)
    return out


def _check_resource_id(action: JsonObject, path: JsonPath) -> list[str]:
    value = action.get("resourceId")
    if value is None:
        return []
    if isinstance(value, str) and _RELATIVE_REFERENCE.fullmatch(value):
        return []
    return [
        _error(
            "spec-action",
            path + ("resourceId",),
            f"{json.dumps(value)} is not a relative reference (Type/id)",
        )
    ]


def _check_action_resource(action: JsonObject, path: JsonPath, action_type: str) -> list[str]:
    resource = action.get("resource")
    if resource is None:
        return [_error("spec-action-resource", path, f"type {action_type} requires 'resource'")]
    resource_type = resource.get("resourceType") if isinstance(resource, dict) else None
    if isinstance(resource_type, str) and resource_type:
        return []
    return [_error("spec-action-resource", path + ("resource",), "must be a FHIR resource object with resourceType")]


def _check_delete(action: JsonObject, path: JsonPath) -> list[str]:
    out: list[str] = []
    if action.get("resourceId") is None:
        out.append(_warning("cds-resp-2", path, "delete action without resourceId"))
    if action.get("resource") is not None:
        out.append(
            _warning("cds-resp-2", path + ("resource",), "delete action carries 'resource'; use resourceId only")
        )
    return out


def _check_override_reasons(card: JsonObject, path: JsonPath) -> list[str]:
    out = _array_type_error(card, "overrideReasons", path, "spec-coding")
    for index, reason in enumerate(_items(card, "overrideReasons")):
        out += _check_coding(reason, path + ("overrideReasons", index), display_rule="cds-resp-4")
    return out


def _check_links(card: JsonObject, path: JsonPath) -> list[str]:
    out = _array_type_error(card, "links", path, "spec-link")
    for index, link in enumerate(_items(card, "links")):
        out += _check_link(link, path + ("links", index))
    return out


def _check_link(link: Any, path: JsonPath) -> list[str]:
    if not isinstance(link, dict):
        return _not_object(link, path, "spec-link", "link")
    out = _require_str(link, "label", path, "spec-link")
    out += _check_url(link, "url", path, "spec-link", required=True)
    out += _check_enum(link, "type", LINK_TYPES, path, "spec-link-type", required=True)
    out += _optional_str(link, "appContext", path, "spec-link")
    out += _optional_bool(link, "autolaunchable", path, "spec-link")
    if link.get("appContext") is not None and link.get("type") != "smart":
        out.append(
            _error(
                "cds-resp-3",
                path + ("appContext",),
                f"appContext on a link of type {json.dumps(link.get('type'))}; only smart links may carry it",
            )
        )
    return out


# --------------------------------------------------------------------------- feedback


def check_feedback_request(doc: Any) -> list[str]:
    """Check a feedback body (``POST {baseUrl}/cds-services/{id}/feedback``)."""
    if not isinstance(doc, dict):
        return _not_object(doc, (), "spec-feedback", "feedback request")
    out = _common(doc)
    items = doc.get("feedback")
    if items is None:
        return out + [_error("spec-feedback", (), "missing required 'feedback'")]
    if not isinstance(items, list) or not items:
        return out + [
            _error(
                "spec-feedback",
                ("feedback",),
                f"must be a non-empty array, got {_json_type(items)} {json.dumps(items)}",
            )
        ]
    for index, item in enumerate(items):
        out += _check_feedback_item(item, ("feedback", index))
    return out


def _check_feedback_item(item: Any, path: JsonPath) -> list[str]:
    if not isinstance(item, dict):
        return _not_object(item, path, "spec-feedback", "Feedback")
    return [
        *_require_str(item, "card", path, "spec-feedback"),
        *_check_enum(item, "outcome", FEEDBACK_OUTCOMES, path, "cds-fb-1", required=True),
        *_check_accepted_suggestions(item, path),
        *_check_override_reason(item, path),
        *_check_timestamp(item, path),
    ]


def _check_accepted_suggestions(item: JsonObject, path: JsonPath) -> list[str]:
    accepted = item.get("acceptedSuggestions")
    out: list[str] = []
    if item.get("outcome") == "accepted" and not (isinstance(accepted, list) and accepted):
        out.append(_error("cds-fb-2", path, "outcome is accepted but acceptedSuggestions is missing or empty"))
    out += _array_type_error(item, "acceptedSuggestions", path, "spec-feedback")
    for index, suggestion in enumerate(_items(item, "acceptedSuggestions")):
        spath = path + ("acceptedSuggestions", index)
        if isinstance(suggestion, dict):
            out += _require_str(suggestion, "id", spath, "spec-feedback")
        else:
            out += _not_object(suggestion, spath, "spec-feedback", "AcceptedSuggestion")
    return out


def _has_value(value: Any) -> bool:
    return value is not None and not _is_empty(value)


def _check_override_reason(item: JsonObject, path: JsonPath) -> list[str]:
    override = item.get("overrideReason")
    if override is None:
        return []
    path = path + ("overrideReason",)
    if not isinstance(override, dict):
        return _not_object(override, path, "spec-feedback", "overrideReason")
    out: list[str] = []
    reason = override.get("reason")
    if not (_has_value(reason) or _has_value(override.get("userComment"))):
        out.append(_error("cds-fb-3", path, "overrideReason has neither reason nor userComment"))
    if reason is not None:
        out += _check_coding(reason, path + ("reason",))
    return out + _optional_str(override, "userComment", path, "spec-feedback")


def _check_timestamp(item: JsonObject, path: JsonPath) -> list[str]:
    value = item.get("outcomeTimestamp")
    if value is None:
        return [_error("spec-timestamp", path, "missing required 'outcomeTimestamp'")]
    path = path + ("outcomeTimestamp",)
    parsed = _parse_rfc3339(value) if isinstance(value, str) else None
    if parsed is None:
        return [_error("spec-timestamp", path, f"{json.dumps(value)} is not an RFC 3339 date-time")]
    if parsed.utcoffset() != timedelta(0):
        return [_warning("spec-timestamp-utc", path, f"{value} is not in UTC")]
    return []


def _parse_rfc3339(value: str) -> datetime | None:
    """Parse an RFC 3339 section 5.6 ``date-time``; None if it is not one (leap second 60 allowed)."""
    match = _RFC3339.fullmatch(value)
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    try:
        if match.group("z"):
            tz = UTC
        else:
            offset_hours, offset_minutes = int(match.group("oh")), int(match.group("om"))
            if offset_hours > 23 or offset_minutes > 59:
                return None
            sign = -1 if match.group("sign") == "-" else 1
            tz = timezone(sign * timedelta(hours=offset_hours, minutes=offset_minutes))
        if second == 60:
            second = 59  # RFC 3339 leap second; datetime cannot represent it
        return datetime(year, month, day, hour, minute, second, tzinfo=tz)
    except ValueError:
        return None


# --------------------------------------------------------------------------- OperationOutcome


def check_operation_outcome(doc: Any) -> list[str]:
    """Check an error body: a FHIR R4 OperationOutcome (CDS Hooks 3.0 "Returning OperationOutcome")."""
    if not isinstance(doc, dict):
        return _not_object(doc, (), "spec-operation-outcome", "OperationOutcome")
    out = _check_null_empty(doc)
    if doc.get("resourceType") != "OperationOutcome":
        out.append(
            _error(
                "spec-operation-outcome",
                (),
                f"resourceType is {json.dumps(doc.get('resourceType'))}, not OperationOutcome",
            )
        )
    issues = doc.get("issue")
    if not isinstance(issues, list) or not issues:
        return out + [_error("spec-operation-outcome", (), "'issue' must be a non-empty array")]
    for index, issue in enumerate(issues):
        out += _check_issue(issue, ("issue", index))
    return out


def _check_issue(issue: Any, path: JsonPath) -> list[str]:
    if not isinstance(issue, dict):
        return _not_object(issue, path, "spec-operation-outcome", "issue")
    out = _check_enum(issue, "severity", ISSUE_SEVERITIES, path, "spec-issue-severity", required=True)
    code = issue.get("code")
    if code is None:
        out.append(_error("spec-issue-code", path, "missing required 'code'"))
    elif not (isinstance(code, str) and code in ISSUE_TYPES):
        out.append(_error("spec-issue-code", path + ("code",), f"{json.dumps(code)} is not a FHIR R4 IssueType code"))
    details = issue.get("details")
    details_text = details.get("text") if isinstance(details, dict) else None
    diagnostics = issue.get("diagnostics")
    if not any(isinstance(t, str) and t.strip() for t in (diagnostics, details_text)):
        out.append(_error("spec-issue-text", path, "needs 'diagnostics' or 'details.text'"))
    return out
