"""Tests for tests/support/cds_checker.py.

Three parts:

1. Every CDS Hooks example extracted from the specification (``hl7_spec/``, HL7/cds-hooks
   commit fb10ca7, i.e. the 3.0.0-ballot text) and from cds-hooks.org (``cds_hooks_org_examples/``)
   goes through the matching checker, with the exact rule ids each is expected to break.
2. Crafted negative cases: a known-good document with one change, asserting the exact
   (sorted) list of rule ids, so a checker that reports nothing, or too much, fails.
3. Helpers and a guard that every rule id documented in the module has a failing case here.

The examples live outside the repository; set ``SPINECDS_CDS_EXAMPLES`` to relocate them.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support import cds_checker
from support.cds_checker import (
    check_cards_response,
    check_discovery,
    check_feedback_request,
    check_hook_request,
    check_operation_outcome,
    errors_only,
    is_warning,
    rule_id,
)

Checker = Callable[[Any], list[str]]
JsonDoc = Any

EXAMPLES = Path(os.environ.get("SPINECDS_CDS_EXAMPLES", "/work/shared/fixtures/cds_hooks_examples"))
EXAMPLE_DIRS = ("hl7_spec", "cds_hooks_org_examples")
HOOK_INSTANCE = "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea"

needs_examples = pytest.mark.skipif(not EXAMPLES.is_dir(), reason=f"CDS Hooks examples not found at {EXAMPLES}")


def ids(violations: list[str]) -> list[str]:
    """Sorted rule ids (warnings keep their ``warning: `` marker)."""
    return sorted(rule_id(v) for v in violations)


# =========================================================================== 1. spec examples


def _as_service(fragment: JsonDoc) -> JsonDoc:
    """discovery-prefetch-template.json is only the ``prefetch`` member of a service definition."""
    return {"services": [{"hook": "patient-view", "id": "a1c", "description": "HbA1c check", **fragment}]}


def _as_request(fragment: JsonDoc) -> JsonDoc:
    """prefetch-data-example.json is only the ``prefetch`` member of a hook request."""
    base = {"hook": "patient-view", "hookInstance": HOOK_INSTANCE, "context": {"patientId": "1288992"}}
    return {**base, **fragment}


def _as_response(card: JsonDoc) -> JsonDoc:
    """opioid-cdc-card.json is a single card, not a response."""
    return {"cards": [card]}


def _as_is(doc: JsonDoc) -> JsonDoc:
    return doc


_strict_cards = functools.partial(check_cards_response, require_uuids=True)

# (file under EXAMPLES, wrapper, checker, expected sorted rule ids)
EXAMPLE_CASES: list[tuple[str, Callable[[JsonDoc], JsonDoc], Checker, list[str]]] = [
    # ---- discovery
    ("hl7_spec/discovery-response.json", _as_is, check_discovery, []),
    ("hl7_spec/discovery-response-with-extension.json", _as_is, check_discovery, []),
    ("hl7_spec/discovery-prefetch-template.json", _as_service, check_discovery, []),
    # ---- hook requests
    ("hl7_spec/hook-request-patient-view-with-prefetch.json", _as_is, check_hook_request, []),
    ("hl7_spec/hook-request-with-extension.json", _as_is, check_hook_request, []),
    # 3.0-ballot-only section ("Example of Pagination in Prefetch"); it uses no CDS Hooks field
    # outside 2.0. Its FHIR ids ("draft\u2011rx\u20111") use U+2011 non-breaking hyphens, invalid
    # FHIR ids, but FHIR content is out of this checker's scope.
    ("hl7_spec/hook-request-paginated-prefetch.json", _as_is, check_hook_request, []),
    ("hl7_spec/prefetch-data-example.json", _as_request, check_hook_request, []),
    (
        "cds_hooks_org_examples/radiology-appropriateness-request-order-select.json",
        _as_is,
        check_hook_request,
        [],
    ),
    # Legacy DSTU2-era example: prefetch.medication is a batch-response entry ({"response": ...,
    # "resource": ...}), not a FHIR resource, so it breaks "each value being a FHIR resource".
    (
        "cds_hooks_org_examples/opioid-cdc-request-order-sign.json",
        _as_is,
        check_hook_request,
        ["spec-prefetch-value"],
    ),
    # ---- responses
    ("hl7_spec/cards-response-empty.json", _as_is, check_cards_response, []),
    ("hl7_spec/cards-response-empty.json", _as_is, _strict_cards, []),
    ("hl7_spec/cards-response-example-1.json", _as_is, check_cards_response, []),
    # The second card ("Another card") has no uuid, so the client could never send feedback for it.
    ("hl7_spec/cards-response-example-1.json", _as_is, _strict_cards, ["spec-uuid"]),
    # The autolaunchable example omits the REQUIRED card.indicator (in the 2.0.1 text too).
    ("hl7_spec/cards-response-example-2.json", _as_is, check_cards_response, ["spec-indicator"]),
    # The systemActions example has no action.description: REQUIRED by the 2.0.1 Action table,
    # optional for systemActions since 3.0, which is the rule the checker applies.
    ("hl7_spec/response-system-actions.json", _as_is, check_cards_response, []),
    # Its resource carries a FHIR `extension` array: not a CDS Hooks extension, so not flagged.
    ("cds_hooks_org_examples/radiology-appropriateness-response.json", _as_is, check_cards_response, []),
    # The opioid card (same legacy example) omits the REQUIRED card.source.
    ("cds_hooks_org_examples/opioid-cdc-card.json", _as_response, check_cards_response, ["spec-source"]),
    # ---- feedback
    ("hl7_spec/feedback-accepted.json", _as_is, check_feedback_request, []),
    ("hl7_spec/feedback-overridden.json", _as_is, check_feedback_request, []),
    ("hl7_spec/feedback-overridden-with-reason.json", _as_is, check_feedback_request, []),
]


def _load(relative: str) -> JsonDoc:
    return json.loads((EXAMPLES / relative).read_text(encoding="utf-8"))


@needs_examples
@pytest.mark.parametrize(
    ("relative", "wrap", "checker", "expected"),
    EXAMPLE_CASES,
    ids=[f"{case[0]}-{getattr(case[2], '__name__', 'strict')}" for case in EXAMPLE_CASES],
)
def test_spec_example(relative: str, wrap: Callable[[JsonDoc], JsonDoc], checker: Checker, expected: list[str]) -> None:
    assert ids(checker(wrap(_load(relative)))) == expected


@needs_examples
def test_every_example_file_is_in_the_table() -> None:
    on_disk = {f"{d}/{p.name}" for d in EXAMPLE_DIRS for p in (EXAMPLES / d).glob("*.json")}
    assert on_disk == {case[0] for case in EXAMPLE_CASES}


@needs_examples
def test_sandbox_service_definitions_as_discovery() -> None:
    # The sandbox stores its services as a bare list; wrapped, it is a conforming discovery body.
    services = _load("sandbox_cds_services/service-definitions.json")
    assert check_discovery({"services": services}) == []


# =========================================================================== 2. crafted cases

DELETE = object()
UUID_A = "8ab1c1a6-2f4e-4f7d-9b1c-3f2d6c7a9e01"
UUID_B = "0c7e4b5e-55a4-4c8e-a1f5-0b0b2f1f9d12"
UUID_C = "5d3f9a0e-8c61-47a2-b8a4-6f7e2d1c0b93"


def mutated(doc: JsonDoc, path: tuple[str | int, ...], value: Any) -> JsonDoc:
    """A deep copy of ``doc`` with ``path`` set to ``value`` (or removed, for DELETE)."""
    doc = copy.deepcopy(doc)
    *parents, last = path
    target = doc
    for key in parents:
        target = target[key]
    if value is DELETE:
        del target[last]
    else:
        target[last] = value
    return doc


def _service_request(request_id: str) -> dict[str, Any]:
    return {
        "resourceType": "ServiceRequest",
        "id": request_id,
        "status": "draft",
        "intent": "order",
        "subject": {"reference": "Patient/p1"},
    }


def valid_response() -> dict[str, Any]:
    return {
        "cards": [
            {
                "uuid": UUID_A,
                "summary": "Consider vertebral augmentation for the painful T12 compression fracture",
                "detail": "MRI shows **marrow oedema** at T12; pain persists after 6 weeks.",
                "indicator": "warning",
                "source": {
                    "label": "spinecds",
                    "url": "https://spinecds.example.org/about",
                    "icon": "https://spinecds.example.org/icon-100.png",
                    "topic": {
                        "system": "http://example.org/cds/topics",
                        "code": "va",
                        "display": "Augmentation",
                    },
                },
                "selectionBehavior": "at-most-one",
                "suggestions": [
                    {
                        "label": "Refer for kyphoplasty",
                        "uuid": UUID_B,
                        "isRecommended": True,
                        "actions": [
                            {
                                "type": "create",
                                "description": "Create a referral to interventional radiology",
                                "resource": _service_request("referral-1"),
                            }
                        ],
                    },
                    {
                        "label": "Replace the draft order",
                        "uuid": UUID_C,
                        "isRecommended": False,
                        "actions": [
                            {
                                "type": "delete",
                                "description": "Remove the draft order",
                                "resourceId": "ServiceRequest/draft-1",
                            },
                            {
                                "type": "update",
                                "description": "Update the second draft order",
                                "resource": _service_request("draft-2"),
                            },
                        ],
                    },
                ],
                "overrideReasons": [
                    {
                        "system": "http://example.org/override",
                        "code": "declined",
                        "display": "Patient declined",
                    }
                ],
                "links": [
                    {"label": "Guideline", "url": "https://example.org/guideline", "type": "absolute"},
                    {
                        "label": "Decision aid",
                        "url": "https://smart.example.org/launch",
                        "type": "smart",
                        "appContext": '{"level":"T12"}',
                        "autolaunchable": False,
                    },
                ],
                "extension": {"org.example.spinecds.rule": "VA-1"},
            }
        ],
        "systemActions": [{"type": "update", "resource": _service_request("draft-3")}],
    }


CARD = ("cards", 0)
SUGGESTION_0 = (*CARD, "suggestions", 0)
SUGGESTION_1 = (*CARD, "suggestions", 1)
CREATE = (*SUGGESTION_0, "actions", 0)
DELETE_ACTION = (*SUGGESTION_1, "actions", 0)
UPDATE = (*SUGGESTION_1, "actions", 1)
ABSOLUTE_LINK = (*CARD, "links", 0)
SMART_LINK = (*CARD, "links", 1)

RESPONSE_CASES: list[tuple[str, tuple[str | int, ...], Any, list[str]]] = [
    # summary: strictly fewer than 140 characters
    ("summary-139-chars-ok", (*CARD, "summary"), "x" * 139, []),
    ("summary-140-chars", (*CARD, "summary"), "x" * 140, ["spec-card-summary"]),
    ("summary-140-non-ascii", (*CARD, "summary"), "é" * 140, ["spec-card-summary"]),
    ("summary-missing", (*CARD, "summary"), DELETE, ["spec-card-summary"]),
    ("summary-empty", (*CARD, "summary"), "", ["spec-card-summary", "spec-no-empty"]),
    ("summary-blank", (*CARD, "summary"), "   ", ["spec-card-summary"]),
    ("summary-not-string", (*CARD, "summary"), ["x"], ["spec-card-summary"]),
    # null and empty elements
    ("detail-null", (*CARD, "detail"), None, ["spec-no-null"]),
    ("detail-empty", (*CARD, "detail"), "", ["spec-no-empty"]),
    ("detail-not-string", (*CARD, "detail"), 5, ["spec-card-detail"]),
    ("links-empty-array", (*CARD, "links"), [], ["spec-no-empty"]),
    ("suggestions-empty-array", (*CARD, "suggestions"), [], ["spec-no-empty"]),
    (
        "source-topic-empty-object",
        (*CARD, "source", "topic"),
        {},
        ["spec-coding", "spec-coding", "spec-no-empty"],
    ),
    ("null-inside-fhir-resource", (*CREATE, "resource", "status"), None, ["spec-no-null"]),
    ("empty-inside-fhir-resource", (*CREATE, "resource", "note"), [], ["spec-no-empty"]),
    ("fhir-primitive-array-null-ok", (*CREATE, "resource", "_instantiatesUri"), [None, {"id": "a"}], []),
    ("system-actions-empty", ("systemActions",), [], ["spec-no-empty"]),
    # indicator
    ("indicator-hard-stop", (*CARD, "indicator"), "hard-stop", ["spec-indicator"]),
    ("indicator-uppercase", (*CARD, "indicator"), "WARNING", ["spec-indicator"]),
    ("indicator-missing", (*CARD, "indicator"), DELETE, ["spec-indicator"]),
    # source
    ("source-missing", (*CARD, "source"), DELETE, ["spec-source"]),
    ("source-not-object", (*CARD, "source"), "spinecds", ["spec-source"]),
    ("source-label-missing", (*CARD, "source", "label"), DELETE, ["spec-source-label"]),
    ("source-url-relative", (*CARD, "source", "url"), "/about", ["spec-source"]),
    ("source-icon-no-scheme", (*CARD, "source", "icon"), "example.org/icon.png", ["spec-source"]),
    ("source-url-ftp", (*CARD, "source", "url"), "ftp://example.org/about", ["spec-source"]),
    ("topic-without-system", (*CARD, "source", "topic", "system"), DELETE, ["spec-coding"]),
    ("topic-without-display-ok", (*CARD, "source", "topic", "display"), DELETE, []),
    # uuid
    ("card-uuid-not-string", (*CARD, "uuid"), 42, ["spec-uuid"]),
    ("card-uuid-free-text-ok-unless-required", (*CARD, "uuid"), "card-1", []),
    # selectionBehavior and suggestions
    ("selection-behavior-missing", (*CARD, "selectionBehavior"), DELETE, ["cds-resp-6"]),
    ("selection-behavior-all", (*CARD, "selectionBehavior"), "all", ["spec-selection-behavior"]),
    ("at-most-one-two-recommended", (*SUGGESTION_1, "isRecommended"), True, ["cds-resp-1"]),
    ("suggestion-label-missing", (*SUGGESTION_0, "label"), DELETE, ["spec-suggestion"]),
    ("suggestion-is-recommended-string", (*SUGGESTION_0, "isRecommended"), "true", ["spec-suggestion"]),
    ("suggestion-actions-not-array", (*SUGGESTION_0, "actions"), {"type": "create"}, ["spec-suggestion"]),
    ("suggestion-not-object", SUGGESTION_0, "Refer", ["spec-suggestion"]),
    ("action-selection-behavior-ok", (*SUGGESTION_1, "actionSelectionBehavior"), "any", []),
    ("action-selection-behavior-bad", (*SUGGESTION_1, "actionSelectionBehavior"), "some", ["cds-resp-7"]),
    # actions
    ("action-type-uppercase", (*CREATE, "type"), "CREATE", ["spec-action-type"]),
    ("action-type-missing", (*CREATE, "type"), DELETE, ["spec-action-type"]),
    ("action-description-missing", (*CREATE, "description"), DELETE, ["cds-resp-5"]),
    ("action-description-not-string", (*CREATE, "description"), 1, ["spec-action"]),
    ("create-without-resource", (*CREATE, "resource"), DELETE, ["spec-action-resource"]),
    ("create-resource-as-string", (*CREATE, "resource"), '{"resourceType": "X"}', ["spec-action-resource"]),
    ("update-resource-without-type", (*UPDATE, "resource", "resourceType"), DELETE, ["spec-action-resource"]),
    (
        "delete-with-resource",
        (*DELETE_ACTION, "resource"),
        _service_request("draft-1"),
        ["warning: cds-resp-2"],
    ),
    ("delete-without-resource-id", (*DELETE_ACTION, "resourceId"), DELETE, ["warning: cds-resp-2"]),
    ("resource-id-not-relative", (*DELETE_ACTION, "resourceId"), "draft-1", ["spec-action"]),
    (
        "resource-id-absolute-url",
        (*DELETE_ACTION, "resourceId"),
        "https://x.org/ServiceRequest/1",
        ["spec-action"],
    ),
    ("action-not-object", CREATE, "create", ["spec-action"]),
    # (valid_response's systemAction has no description: optional there, as in 3.0)
    ("system-action-description-not-string", ("systemActions", 0, "description"), 5, ["spec-action"]),
    ("system-action-bad-type", ("systemActions", 0, "type"), "patch", ["spec-action-type"]),
    ("system-action-not-array", ("systemActions",), {"type": "update"}, ["spec-response"]),
    # override reasons
    ("override-reason-without-display", (*CARD, "overrideReasons", 0, "display"), DELETE, ["cds-resp-4"]),
    ("override-reason-display-blank", (*CARD, "overrideReasons", 0, "display"), " ", ["cds-resp-4"]),
    ("override-reason-without-code", (*CARD, "overrideReasons", 0, "code"), DELETE, ["spec-coding"]),
    ("override-reasons-not-array", (*CARD, "overrideReasons"), {"code": "x"}, ["spec-coding"]),
    # links
    ("app-context-on-absolute-link", (*ABSOLUTE_LINK, "appContext"), "{}", ["cds-resp-3"]),
    ("link-type-relative", (*ABSOLUTE_LINK, "type"), "relative", ["spec-link-type"]),
    ("link-type-missing", (*ABSOLUTE_LINK, "type"), DELETE, ["spec-link-type"]),
    ("smart-link-made-absolute", (*SMART_LINK, "type"), "absolute", ["cds-resp-3"]),
    ("link-url-relative", (*ABSOLUTE_LINK, "url"), "guideline.html", ["spec-link"]),
    ("link-label-missing", (*ABSOLUTE_LINK, "label"), DELETE, ["spec-link"]),
    ("link-autolaunchable-string", (*SMART_LINK, "autolaunchable"), "true", ["spec-link"]),
    ("link-app-context-object", (*SMART_LINK, "appContext"), {"level": "T12"}, ["spec-link"]),
    # extensions
    ("card-extension-array", (*CARD, "extension"), [{"url": "x"}], ["spec-extension"]),
    ("response-extension-string", ("extension",), "x", ["spec-extension"]),
    ("suggestion-extension-object-ok", (*SUGGESTION_0, "extension"), {"org.example.a": 1}, []),
    ("fhir-extension-array-in-resource-ok", (*CREATE, "resource", "extension"), [{"url": "http://x"}], []),
    # top level
    ("cards-missing", ("cards",), DELETE, ["spec-response"]),
    ("cards-not-array", ("cards",), "none", ["spec-response"]),
    ("card-not-object", CARD, "card", ["spec-response"]),
]


def test_valid_response_conforms() -> None:
    assert check_cards_response(valid_response()) == []
    assert check_cards_response(valid_response(), require_uuids=True) == []


@pytest.mark.parametrize(
    ("path", "value", "expected"), [c[1:] for c in RESPONSE_CASES], ids=[c[0] for c in RESPONSE_CASES]
)
def test_response_case(path: tuple[str | int, ...], value: Any, expected: list[str]) -> None:
    assert ids(check_cards_response(mutated(valid_response(), path, value))) == expected


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ((*CARD, "uuid"), DELETE, ["spec-uuid"]),
        ((*SUGGESTION_1, "uuid"), DELETE, ["spec-uuid"]),
        ((*SUGGESTION_0, "uuid"), "suggestion-1", ["spec-uuid"]),
        ((*CARD, "uuid"), UUID_A.upper(), []),
    ],
    ids=["card-uuid-missing", "suggestion-uuid-missing", "suggestion-uuid-not-uuid", "uppercase-uuid-ok"],
)
def test_require_uuids(path: tuple[str | int, ...], value: Any, expected: list[str]) -> None:
    doc = mutated(valid_response(), path, value)
    assert ids(check_cards_response(doc, require_uuids=True)) == expected


def test_empty_cards_allowed_and_at_most_one_with_any() -> None:
    assert check_cards_response({"cards": []}) == []
    both_recommended = mutated(valid_response(), (*SUGGESTION_1, "isRecommended"), True)
    assert check_cards_response(mutated(both_recommended, (*CARD, "selectionBehavior"), "any")) == []


def test_response_not_an_object() -> None:
    assert ids(check_cards_response([])) == ["spec-response"]


def test_violation_message_format() -> None:
    doc = mutated(valid_response(), (*CARD, "selectionBehavior"), DELETE)
    assert check_cards_response(doc) == ["cds-resp-6: cards[0]: suggestions present without selectionBehavior"]
    doc = mutated(valid_response(), (*CARD, "summary"), "x" * 140)
    assert check_cards_response(doc) == [
        "spec-card-summary: cards[0].summary: is 140 characters; must be fewer than 140"
    ]


# --------------------------------------------------------------------------- discovery


def valid_discovery() -> dict[str, Any]:
    return {
        "services": [
            {
                "hook": "patient-view",
                "title": "Spinal metastasis screening",
                "description": "Flags vertebral compression fractures in metastatic disease",
                "id": "spine-screen",
                "prefetch": {
                    "patient": "Patient/{{context.patientId}}",
                    "conditions": "Condition?patient={{context.patientId}}&clinical-status=active",
                    "user": "PractitionerRole?_id={{userPractitionerRoleId}}",
                    "me": "{{context.userId}}",
                },
                "usageRequirements": "Needs Condition and Observation read access.",
                "extension": {"org.example.spinecds.version": "0.1.0"},
            },
            {"hook": "order-sign", "description": "Checks RT orders", "id": "spine-screen"},
        ]
    }


SERVICE = ("services", 0)
PREFETCH = (*SERVICE, "prefetch")

DISCOVERY_CASES: list[tuple[str, tuple[str | int, ...], Any, list[str]]] = [
    ("services-missing", ("services",), DELETE, ["spec-discovery", "spec-no-empty"]),  # leaves {}
    ("services-object", ("services",), {"id": "x"}, ["spec-discovery"]),
    ("services-empty-ok", ("services",), [], []),
    ("service-not-object", SERVICE, "spine-screen", ["spec-discovery"]),
    ("hook-missing", (*SERVICE, "hook"), DELETE, ["spec-service"]),
    ("description-missing", (*SERVICE, "description"), DELETE, ["spec-service"]),
    ("description-empty", (*SERVICE, "description"), "", ["spec-no-empty", "spec-service"]),
    ("id-missing", (*SERVICE, "id"), DELETE, ["spec-service"]),
    ("id-not-string", (*SERVICE, "id"), 7, ["spec-service"]),
    ("id-with-slash", (*SERVICE, "id"), "spine/screen", ["spec-service-id"]),
    ("id-with-space", (*SERVICE, "id"), "spine screen", ["spec-service-id"]),
    ("duplicate-id-and-hook", ("services", 1, "hook"), "patient-view", ["spec-service-id"]),
    ("title-not-string", (*SERVICE, "title"), 5, ["spec-service"]),
    ("title-absent-ok", (*SERVICE, "title"), DELETE, []),
    ("usage-requirements-null", (*SERVICE, "usageRequirements"), None, ["spec-no-null"]),
    ("prefetch-not-object", PREFETCH, "Patient/{{context.patientId}}", ["spec-prefetch-template"]),
    ("prefetch-template-not-string", (*PREFETCH, "patient"), {"read": "Patient"}, ["spec-prefetch-template"]),
    ("prefetch-empty", PREFETCH, {}, ["spec-no-empty"]),
    (
        "token-nested-context",
        (*PREFETCH, "patient"),
        "Medication/{{context.medication.id}}",
        ["spec-prefetch-token"],
    ),
    ("token-not-context", (*PREFETCH, "patient"), "Patient/{{Patient.id}}", ["spec-prefetch-token"]),
    (
        "token-fhirpath-3-0",
        (*PREFETCH, "patient"),
        "Observation?date=gt{{today() - 90 days}}",
        ["spec-prefetch-token"],
    ),
    ("token-whitespace", (*PREFETCH, "patient"), "Patient/{{ context.patientId }}", ["spec-prefetch-token"]),
    ("token-unknown-user", (*PREFETCH, "user"), "Practitioner/{{userId}}", ["spec-prefetch-token"]),
    ("token-unbalanced", (*PREFETCH, "patient"), "Patient/{{context.patientId}", ["spec-prefetch-token"]),
    ("token-stray-close", (*PREFETCH, "patient"), "Patient/context.patientId}}", ["spec-prefetch-token"]),
    ("token-all-user-kinds-ok", (*PREFETCH, "user"), "RelatedPerson/{{userRelatedPersonId}}", []),
    ("no-token-ok", (*PREFETCH, "patient"), "Patient?_id=1", []),
    ("extension-string", (*SERVICE, "extension"), "x", ["spec-extension"]),
]


def test_valid_discovery_conforms() -> None:
    assert check_discovery(valid_discovery()) == []


@pytest.mark.parametrize(
    ("path", "value", "expected"), [c[1:] for c in DISCOVERY_CASES], ids=[c[0] for c in DISCOVERY_CASES]
)
def test_discovery_case(path: tuple[str | int, ...], value: Any, expected: list[str]) -> None:
    assert ids(check_discovery(mutated(valid_discovery(), path, value))) == expected


def test_discovery_not_an_object() -> None:
    assert ids(check_discovery([])) == ["spec-discovery"]


def test_prefetch_key_with_dash_is_quoted_in_path() -> None:
    doc = mutated(valid_discovery(), (*PREFETCH, "hemoglobin-a1c"), "Observation?patient={{context.pid.x}}")
    assert check_discovery(doc) == [
        'spec-prefetch-token: services[0].prefetch["hemoglobin-a1c"]: '
        "token {{context.pid.x}} is neither {{context.<root-field>}} nor a user token"
    ]


# --------------------------------------------------------------------------- hook request


def valid_request() -> dict[str, Any]:
    return {
        "hook": "patient-view",
        "hookInstance": HOOK_INSTANCE,
        "fhirServer": "https://ehr.example.org/fhir",
        "fhirAuthorization": {
            "access_token": "opaque-token",
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "patient/Patient.read patient/Condition.read",
            "subject": "spinecds",
            "patient": "p1",
        },
        "context": {"userId": "Practitioner/u1", "patientId": "p1"},
        "prefetch": {
            "patient": {"resourceType": "Patient", "id": "p1"},
            "conditions": {"resourceType": "Bundle", "type": "searchset", "total": 0},
            "observations": None,
        },
        "extension": {"org.example.trace": "abc"},
    }


AUTH = ("fhirAuthorization",)

REQUEST_CASES: list[tuple[str, tuple[str | int, ...], Any, list[str]]] = [
    ("hook-missing", ("hook",), DELETE, ["spec-request"]),
    ("hook-not-string", ("hook",), ["patient-view"], ["spec-request"]),
    ("hook-instance-missing", ("hookInstance",), DELETE, ["spec-request"]),
    ("hook-instance-not-uuid", ("hookInstance",), "call-1", ["spec-uuid"]),
    ("context-missing", ("context",), DELETE, ["spec-request"]),
    ("context-not-object", ("context",), "p1", ["spec-request"]),
    ("context-empty", ("context",), {}, ["spec-no-empty"]),
    ("fhir-authorization-without-fhir-server", ("fhirServer",), DELETE, ["cds-r-1"]),
    ("fhir-server-null", ("fhirServer",), None, ["cds-r-1", "spec-no-null"]),
    ("fhir-server-relative", ("fhirServer",), "ehr.example.org/fhir", ["spec-fhir-server"]),
    ("fhir-server-http-ok", ("fhirServer",), "http://localhost:8080/fhir", []),
    ("fhir-authorization-not-object", AUTH, "Bearer x", ["spec-fhir-authorization"]),
    ("access-token-missing", (*AUTH, "access_token"), DELETE, ["spec-fhir-authorization"]),
    ("token-type-lowercase", (*AUTH, "token_type"), "bearer", ["spec-fhir-authorization"]),
    ("token-type-missing", (*AUTH, "token_type"), DELETE, ["spec-fhir-authorization"]),
    ("expires-in-string", (*AUTH, "expires_in"), "300", ["spec-fhir-authorization"]),
    ("expires-in-boolean", (*AUTH, "expires_in"), True, ["spec-fhir-authorization"]),
    ("expires-in-float", (*AUTH, "expires_in"), 300.5, ["spec-fhir-authorization"]),
    ("expires-in-negative", (*AUTH, "expires_in"), -1, ["spec-fhir-authorization"]),
    ("scope-missing", (*AUTH, "scope"), DELETE, ["spec-fhir-authorization"]),
    ("subject-missing", (*AUTH, "subject"), DELETE, ["spec-fhir-authorization"]),
    ("patient-scope-without-patient", (*AUTH, "patient"), DELETE, ["warning: cds-r-2"]),
    ("patient-not-string", (*AUTH, "patient"), 1, ["spec-fhir-authorization"]),
    ("prefetch-value-string", ("prefetch", "user"), "123", ["spec-prefetch-value"]),
    (
        "prefetch-value-without-resource-type",
        ("prefetch", "patient", "resourceType"),
        DELETE,
        ["spec-prefetch-value"],
    ),
    ("prefetch-value-empty", ("prefetch", "patient"), {}, ["spec-no-empty", "spec-prefetch-value"]),
    ("prefetch-not-object", ("prefetch",), ["Patient"], ["spec-prefetch-value"]),
    ("prefetch-bundle-with-empty-entry", ("prefetch", "conditions", "entry"), [], ["spec-no-empty"]),
    ("null-outside-prefetch-values", ("context", "encounterId"), None, ["spec-no-null"]),
    ("prefetch-operation-outcome-ok", ("prefetch", "patient"), {"resourceType": "OperationOutcome"}, []),
    ("extension-string", ("extension",), "x", ["spec-extension"]),
    ("context-extension-array", ("context", "extension"), [], ["spec-extension", "spec-no-empty"]),
]


def test_valid_request_conforms() -> None:
    assert check_hook_request(valid_request()) == []


def test_request_without_optional_members_conforms() -> None:
    minimal = {"hook": "patient-view", "hookInstance": HOOK_INSTANCE, "context": {"patientId": "p1"}}
    assert check_hook_request(minimal) == []


@pytest.mark.parametrize(
    ("path", "value", "expected"), [c[1:] for c in REQUEST_CASES], ids=[c[0] for c in REQUEST_CASES]
)
def test_request_case(path: tuple[str | int, ...], value: Any, expected: list[str]) -> None:
    assert ids(check_hook_request(mutated(valid_request(), path, value))) == expected


def test_cds_r_2_is_a_warning() -> None:
    violations = check_hook_request(mutated(valid_request(), (*AUTH, "patient"), DELETE))
    assert violations == [
        "warning: cds-r-2: fhirAuthorization: scope grants patient/ scopes but 'patient' is not populated"
    ]
    assert errors_only(violations) == []


def test_request_not_an_object() -> None:
    assert ids(check_hook_request("{}")) == ["spec-request"]


# --------------------------------------------------------------------------- feedback


def valid_feedback() -> dict[str, Any]:
    return {
        "feedback": [
            {
                "card": UUID_A,
                "outcome": "accepted",
                "acceptedSuggestions": [{"id": UUID_B}],
                "outcomeTimestamp": "2021-12-11T10:05:31Z",
            },
            {
                "card": UUID_A,
                "outcome": "overridden",
                "overrideReason": {
                    "reason": {
                        "system": "http://example.org/override",
                        "code": "declined",
                        "display": "Declined",
                    },
                    "userComment": "Patient prefers radiotherapy first.",
                },
                "outcomeTimestamp": "2021-12-11T10:06:00.123Z",
            },
        ]
    }


ACCEPTED = ("feedback", 0)
OVERRIDDEN = ("feedback", 1)
OVERRIDE = (*OVERRIDDEN, "overrideReason")
STAMP = (*ACCEPTED, "outcomeTimestamp")

FEEDBACK_CASES: list[tuple[str, tuple[str | int, ...], Any, list[str]]] = [
    ("feedback-missing", ("feedback",), DELETE, ["spec-feedback", "spec-no-empty"]),  # leaves {}
    ("feedback-empty", ("feedback",), [], ["spec-feedback", "spec-no-empty"]),
    ("feedback-object", ("feedback",), {"card": UUID_A}, ["spec-feedback"]),
    ("item-not-object", ACCEPTED, UUID_A, ["spec-feedback"]),
    ("card-missing", (*ACCEPTED, "card"), DELETE, ["spec-feedback"]),
    ("outcome-rejected", (*ACCEPTED, "outcome"), "rejected", ["cds-fb-1"]),
    ("outcome-missing", (*OVERRIDDEN, "outcome"), DELETE, ["cds-fb-1"]),
    ("accepted-without-suggestions", (*ACCEPTED, "acceptedSuggestions"), DELETE, ["cds-fb-2"]),
    (
        "accepted-with-empty-suggestions",
        (*ACCEPTED, "acceptedSuggestions"),
        [],
        ["cds-fb-2", "spec-no-empty"],
    ),
    (
        "accepted-suggestion-without-id",
        (*ACCEPTED, "acceptedSuggestions", 0),
        {"uuid": UUID_B},
        ["spec-feedback"],
    ),
    ("accepted-suggestion-as-string", (*ACCEPTED, "acceptedSuggestions", 0), UUID_B, ["spec-feedback"]),
    ("override-reason-empty", OVERRIDE, {}, ["cds-fb-3", "spec-no-empty"]),
    ("override-reason-neither", OVERRIDE, {"extension": {"org.example.x": 1}}, ["cds-fb-3"]),
    ("override-reason-comment-only-ok", (*OVERRIDE, "reason"), DELETE, []),
    ("override-reason-coding-only-ok", (*OVERRIDE, "userComment"), DELETE, []),
    ("override-reason-without-system", (*OVERRIDE, "reason", "system"), DELETE, ["spec-coding"]),
    ("override-reason-not-object", OVERRIDE, "declined", ["spec-feedback"]),
    ("user-comment-not-string", (*OVERRIDE, "userComment"), 3, ["spec-feedback"]),
    ("timestamp-missing", STAMP, DELETE, ["spec-timestamp"]),
    ("timestamp-date-only", STAMP, "2021-12-11", ["spec-timestamp"]),
    ("timestamp-no-offset", STAMP, "2021-12-11T10:05:31", ["spec-timestamp"]),
    ("timestamp-space-separator", STAMP, "2021-12-11 10:05:31Z", ["spec-timestamp"]),
    ("timestamp-month-13", STAMP, "2021-13-11T10:05:31Z", ["spec-timestamp"]),
    ("timestamp-feb-30", STAMP, "2021-02-30T10:05:31Z", ["spec-timestamp"]),
    ("timestamp-hour-25", STAMP, "2021-12-11T25:05:31Z", ["spec-timestamp"]),
    ("timestamp-offset-hour-24", STAMP, "2021-12-11T10:05:31+24:00", ["spec-timestamp"]),
    ("timestamp-offset-minute-75", STAMP, "2021-12-11T10:05:31+01:75", ["spec-timestamp"]),
    ("timestamp-compact-offset", STAMP, "2021-12-11T10:05:31+0100", ["spec-timestamp"]),
    ("timestamp-epoch-number", STAMP, 1639217131, ["spec-timestamp"]),
    ("timestamp-rfc3339-example-ok", STAMP, "1985-04-12T23:20:50.52Z", []),
    ("timestamp-lowercase-ok", STAMP, "2021-12-11t10:05:31z", []),
    ("timestamp-leap-second-ok", STAMP, "2016-12-31T23:59:60Z", []),
    ("timestamp-minus-zero-ok", STAMP, "2021-12-11T10:05:31-00:00", []),
    ("timestamp-not-utc", STAMP, "2021-12-11T11:05:31+01:00", ["warning: spec-timestamp-utc"]),
    ("extension-array", (*ACCEPTED, "extension"), ["x"], ["spec-extension"]),
]


def test_valid_feedback_conforms() -> None:
    assert check_feedback_request(valid_feedback()) == []


@pytest.mark.parametrize(
    ("path", "value", "expected"), [c[1:] for c in FEEDBACK_CASES], ids=[c[0] for c in FEEDBACK_CASES]
)
def test_feedback_case(path: tuple[str | int, ...], value: Any, expected: list[str]) -> None:
    assert ids(check_feedback_request(mutated(valid_feedback(), path, value))) == expected


def test_feedback_not_an_object() -> None:
    assert ids(check_feedback_request([])) == ["spec-feedback"]


# --------------------------------------------------------------------------- OperationOutcome


def valid_operation_outcome() -> dict[str, Any]:
    # The CDS Hooks 3.0.0-ballot "Example OperationOutcome Resource" (412, missing prefetch key).
    return {
        "resourceType": "OperationOutcome",
        "id": "missing-allergies",
        "issue": [
            {
                "severity": "error",
                "code": "processing",
                "details": {"text": "Cannot evaluate order-select guidance: no AllergyIntolerance resources supplied."},
                "diagnostics": "CDS Hooks prefetch key 'patientAllergies' was absent or empty.",
                "expression": ["Bundle.entry.resource.ofType(AllergyIntolerance)"],
            }
        ],
    }


ISSUE = ("issue", 0)

OUTCOME_CASES: list[tuple[str, tuple[str | int, ...], Any, list[str]]] = [
    ("resource-type-bundle", ("resourceType",), "Bundle", ["spec-operation-outcome"]),
    ("resource-type-missing", ("resourceType",), DELETE, ["spec-operation-outcome"]),
    ("issue-missing", ("issue",), DELETE, ["spec-operation-outcome"]),
    ("issue-empty", ("issue",), [], ["spec-no-empty", "spec-operation-outcome"]),
    ("issue-not-object", ISSUE, "error", ["spec-operation-outcome"]),
    ("severity-bad", (*ISSUE, "severity"), "critical", ["spec-issue-severity"]),
    ("severity-missing", (*ISSUE, "severity"), DELETE, ["spec-issue-severity"]),
    ("code-not-issue-type", (*ISSUE, "code"), "missing-prefetch", ["spec-issue-code"]),
    ("code-missing", (*ISSUE, "code"), DELETE, ["spec-issue-code"]),
    ("diagnostics-only-ok", (*ISSUE, "details"), DELETE, []),
    ("details-text-only-ok", (*ISSUE, "diagnostics"), DELETE, []),
    (
        "details-coding-with-diagnostics-ok",
        (*ISSUE, "details"),
        {"coding": [{"system": "x", "code": "y"}]},
        [],
    ),
    (
        "neither-diagnostics-nor-details",
        ISSUE,
        {"severity": "error", "code": "processing"},
        ["spec-issue-text"],
    ),
    ("null-element", (*ISSUE, "diagnostics"), None, ["spec-no-null"]),
]


def test_valid_operation_outcome_conforms() -> None:
    assert check_operation_outcome(valid_operation_outcome()) == []


@pytest.mark.parametrize(
    ("path", "value", "expected"), [c[1:] for c in OUTCOME_CASES], ids=[c[0] for c in OUTCOME_CASES]
)
def test_operation_outcome_case(path: tuple[str | int, ...], value: Any, expected: list[str]) -> None:
    assert ids(check_operation_outcome(mutated(valid_operation_outcome(), path, value))) == expected


def test_issue_needs_diagnostics_or_details_text() -> None:
    doc = mutated(valid_operation_outcome(), (*ISSUE, "diagnostics"), DELETE)
    doc = mutated(doc, (*ISSUE, "details"), {"coding": [{"system": "http://example.org", "code": "x"}]})
    assert ids(check_operation_outcome(doc)) == ["spec-issue-text"]


def test_every_fhir_r4_issue_type_is_accepted() -> None:
    for code in sorted(cds_checker.ISSUE_TYPES):
        assert check_operation_outcome(mutated(valid_operation_outcome(), (*ISSUE, "code"), code)) == [], code
    assert len(cds_checker.ISSUE_TYPES) == 31


# =========================================================================== 3. helpers and coverage


def test_rule_id_and_warning_helpers() -> None:
    error = "cds-resp-6: cards[0]: suggestions present without selectionBehavior"
    warning = "warning: cds-resp-2: cards[0].suggestions[0].actions[0]: delete action without resourceId"
    assert rule_id(error) == "cds-resp-6"
    assert rule_id(warning) == "warning: cds-resp-2"
    assert not is_warning(error)
    assert is_warning(warning)
    assert errors_only([error, warning]) == [error]


def test_root_path_is_dollar() -> None:
    assert check_cards_response({}) == [
        "spec-no-empty: $: empty object is not allowed; omit it",
        "spec-response: $: missing required 'cards'",
    ]


def _documented_rule_ids() -> set[str]:
    doc = cds_checker.__doc__ or ""
    return set(re.findall(r"^((?:spec|cds)-[a-z0-9-]+)", doc, flags=re.MULTILINE))


def _tested_rule_ids() -> set[str]:
    tables = (RESPONSE_CASES, DISCOVERY_CASES, REQUEST_CASES, FEEDBACK_CASES, OUTCOME_CASES)
    expected = [rule for table in tables for case in table for rule in case[3]]
    return {rule.removeprefix("warning: ") for rule in expected}


def test_every_documented_rule_has_a_failing_case() -> None:
    documented = _documented_rule_ids()
    assert len(documented) >= 45
    assert documented - _tested_rule_ids() == set()
    assert _tested_rule_ids() - documented == set()


def test_checkers_never_raise_on_junk() -> None:
    junk: list[Any] = [None, 0, "x", [], [None], {"cards": [None, 1, "x", []]}, {"services": [[], None]}]
    junk += [{"feedback": [None, {"outcome": None}]}, {"issue": [None]}, {"prefetch": 5, "context": []}]
    checkers: list[Checker] = [
        check_cards_response,
        _strict_cards,
        check_discovery,
        check_hook_request,
        check_feedback_request,
        check_operation_outcome,
    ]
    for checker in checkers:
        for doc in junk:
            violations = checker(doc)
            assert violations, (checker, doc)
            assert all(re.match(r"(warning: )?(spec|cds)-[a-z0-9-]+: \S", v) for v in violations), violations
