"""Hostile input: every malformed request gets a clear 4xx OperationOutcome, never a 5xx or HTML.

Table-driven over both POST endpoints: body size (with and without Content-Length, also through
real gunicorn), content type, nesting depth, huge arrays, invalid UTF-8, NaN/Infinity, duplicate
keys, and a wrong type in every field of the hook request and of feedback, each answered with a
400 whose diagnostics name the field.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from conftest import CASE_NOW
from support.cds_checker import check_operation_outcome

from service.app import create_app

SERVICE = "spine-metastasis-review"
CALL = f"/cds-services/{SERVICE}"
FEEDBACK = f"{CALL}/feedback"
ENDPOINTS = [CALL, FEEDBACK]
SMALL_LIMIT = 4096


def valid_call() -> dict[str, Any]:
    return {
        "hook": "patient-view",
        "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "context": {"userId": "Practitioner/1", "patientId": "p1"},
        "prefetch": {
            "patient": {"resourceType": "Patient", "id": "p1"},
            "conditions": {"resourceType": "Bundle", "type": "searchset", "total": 0},
        },
    }


def valid_feedback() -> dict[str, Any]:
    return {
        "feedback": [
            {
                "card": "8e6d0a4b-5e6a-4bc4-9d8c-cc3ee9a0f6a1",
                "outcome": "overridden",
                "overrideReason": {
                    "reason": {"system": "https://fhir.spinecds.org/CodeSystem/override-reason", "code": "other"},
                    "userComment": "x",
                },
                "outcomeTimestamp": "2026-06-01T12:00:00Z",
            }
        ]
    }


def outcome_of(response: Any, status: int) -> str:
    """Assert an OperationOutcome with this status; return all diagnostics joined."""
    assert response.status_code == status, response.get_data(as_text=True)[:400]
    assert response.mimetype in {"application/fhir+json", "application/json"}
    doc = json.loads(response.get_data())
    assert check_operation_outcome(doc) == []
    return "\n".join(i.get("diagnostics", "") for i in doc["issue"])


@pytest.fixture(scope="module")
def small_app(tmp_path_factory: pytest.TempPathFactory) -> Any:
    db = tmp_path_factory.mktemp("hostile") / "spinecds.db"
    return create_app({"database_url": f"sqlite:///{db}", "max_request_bytes": SMALL_LIMIT}, clock=lambda: CASE_NOW)


def test_valid_bodies_are_accepted(client: Any) -> None:
    """The baselines the table below mutates are themselves valid (so every 400 is the mutation's)."""
    assert client.post(CALL, json=valid_call()).status_code == 200
    assert client.post(FEEDBACK, json=valid_feedback()).status_code == 200


# ----------------------------------------------------------------------------- size


def _padded(endpoint: str, size: int) -> bytes:
    body = valid_call() if endpoint == CALL else valid_feedback()
    body["padding"] = ""
    raw = json.dumps(body).encode()
    body["padding"] = "x" * (size - len(raw))
    return json.dumps(body).encode()


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_body_of_exactly_the_limit_is_read(small_app: Any, endpoint: str, chunked: bool) -> None:
    body = _padded(endpoint, SMALL_LIMIT)
    assert len(body) == SMALL_LIMIT
    client = small_app.test_client()
    if chunked:
        response = client.post(
            endpoint,
            input_stream=io.BytesIO(body),
            content_type="application/json",
            headers={"Transfer-Encoding": "chunked"},
            environ_overrides={"wsgi.input_terminated": True},
        )
    else:
        response = client.post(endpoint, data=body, content_type="application/json")
    assert response.status_code == 200


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_body_over_the_limit_is_413(small_app: Any, endpoint: str, chunked: bool) -> None:
    body = _padded(endpoint, SMALL_LIMIT + 1)
    client = small_app.test_client()
    if chunked:
        # no Content-Length: the server reads until the end of the (terminated) stream, as gunicorn provides
        response = client.post(
            endpoint,
            input_stream=io.BytesIO(body),
            content_type="application/json",
            headers={"Transfer-Encoding": "chunked"},
            environ_overrides={"wsgi.input_terminated": True},
        )
    else:
        response = client.post(endpoint, data=body, content_type="application/json")
    outcome_of(response, 413)


@pytest.fixture(scope="module")
def gunicorn_server() -> Iterator[Any]:
    from support.gunicorn import SpinecdsServer

    with SpinecdsServer({"SPINECDS_MAX_REQUEST_BYTES": str(SMALL_LIMIT)}, workers=1, threads=2) as server:
        yield server


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_real_gunicorn_413_with_and_without_content_length(gunicorn_server: Any, endpoint: str) -> None:
    body = _padded(endpoint, SMALL_LIMIT * 4)
    headers = {"Content-Type": "application/json"}

    def chunks() -> Iterator[bytes]:  # a generator body makes requests send Transfer-Encoding: chunked
        for i in range(0, len(body), 1000):
            yield body[i : i + 1000]

    for data in (body, chunks()):
        response = requests.post(gunicorn_server.url(endpoint), data=data, headers=headers, timeout=30)
        assert response.status_code == 413, response.text[:300]
        assert response.headers["Content-Type"].startswith("application/fhir+json")
        assert response.json()["resourceType"] == "OperationOutcome"
    ok = requests.post(gunicorn_server.url(endpoint), data=_padded(endpoint, SMALL_LIMIT), headers=headers, timeout=30)
    assert ok.status_code == 200


# ----------------------------------------------------------------------------- content type

CONTENT_TYPES = [
    None,
    "text/plain",
    "text/html",
    "application/xml",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/octet-stream",
]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("content_type", CONTENT_TYPES)
def test_wrong_content_type_is_415(client: Any, endpoint: str, content_type: str | None) -> None:
    body = json.dumps(valid_call() if endpoint == CALL else valid_feedback())
    response = client.post(endpoint, data=body, content_type=content_type)
    outcome_of(response, 415)


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "application/fhir+json"])
def test_json_media_types_are_accepted(client: Any, content_type: str) -> None:
    assert client.post(CALL, data=json.dumps(valid_call()), content_type=content_type).status_code == 200


# ----------------------------------------------------------------------------- malformed JSON


def _nested(depth: int, opener: str, closer: str) -> bytes:
    return (opener * depth + closer * depth).encode()


def _nested_in_prefetch(depth: int) -> bytes:
    inner = '{"a":' * depth + "1" + "}" * depth
    body = json.dumps(valid_call())
    return body.replace('"total": 0}', '"total": 0, "x": ' + inner + "}", 1).encode()


MALFORMED: list[tuple[str, bytes, str]] = [
    ("arrays-100000-deep", _nested(100_000, "[", "]"), "nested deeper"),
    ("objects-100000-deep", ('{"a":' * 100_000 + "1" + "}" * 100_000).encode(), "nested deeper"),
    ("arrays-101-deep", _nested(101, "[", "]"), "nested deeper"),
    ("deep-inside-prefetch", _nested_in_prefetch(5000), "nested deeper"),
    ("moderately-deep-inside-prefetch", _nested_in_prefetch(150), "nested deeper"),
    ("invalid-utf8-byte", b'{"hook": "patient-view\xff"}', "UTF-8"),
    ("lone-continuation-byte", b'{"hook": "\x80"}', "UTF-8"),
    ("overlong-encoding", b'{"hook": "\xc0\xaf"}', "UTF-8"),
    ("encoded-surrogate", b'{"hook": "\xed\xa0\x80"}', "UTF-8"),
    ("latin1-text", '{"hook": "über"}'.encode("latin-1"), "UTF-8"),
    ("utf16", json.dumps(valid_call()).encode("utf-16"), "UTF-8"),
    ("nan", b'{"hook": NaN}', "NaN"),
    ("infinity", b'{"hook": "patient-view", "context": {"x": Infinity}}', "Infinity"),
    ("minus-infinity", b'{"feedback": -Infinity}', "Infinity"),
    ("nan-in-prefetch", json.dumps(valid_call()).replace('"total": 0', '"total": NaN').encode(), "NaN"),
    ("duplicate-key", b'{"hook": "patient-view", "hook": "order-sign"}', "duplicate"),
    (
        "duplicate-nested-key",
        json.dumps(valid_call()).replace('"id": "p1"', '"id": "p1", "id": "p2"').encode(),
        "duplicate",
    ),
    ("empty-body", b"", "not valid JSON"),
    ("truncated", json.dumps(valid_call())[:-5].encode(), "not valid JSON"),
    ("trailing-garbage", json.dumps(valid_call()).encode() + b" {}", "not valid JSON"),
    ("bare-word", b"hello", "not valid JSON"),
    ("single-quotes", b"{'hook': 'patient-view'}", "not valid JSON"),
    ("nul-byte", b'{"hook": "patient-view"}\x00', "not valid JSON"),
    ("utf8-bom", b"\xef\xbb\xbf" + json.dumps(valid_call()).encode(), "JSON"),
]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize(("body", "needle"), [(b, n) for _, b, n in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_malformed_json_is_400(client: Any, endpoint: str, body: bytes, needle: str) -> None:
    diagnostics = outcome_of(client.post(endpoint, data=body, content_type="application/json"), 400)
    assert needle in diagnostics


def test_depth_limit_allows_real_fhir_nesting(client: Any) -> None:
    response = client.post(CALL, data=_nested_in_prefetch(60), content_type="application/json")
    assert response.status_code == 200


def test_depth_limit_is_exactly_100_levels(client: Any) -> None:
    # the body, prefetch and prefetch.conditions are levels 1-3: 97 objects nested inside reach
    # level 100; one more is refused
    assert client.post(CALL, data=_nested_in_prefetch(97), content_type="application/json").status_code == 200
    outcome_of(client.post(CALL, data=_nested_in_prefetch(98), content_type="application/json"), 400)


@pytest.mark.parametrize(
    "text",
    [
        "[" * 500,  # brackets inside a string are not nesting
        "{" * 200 + "]" * 300,
        '\\"' + "[" * 200,  # escaped quote: still inside the string
        "[" * 200 + "\\\\",  # escaped backslash just before the closing quote
        "\\u005b" * 200,  # an escaped "[" is text too
    ],
    ids=["brackets", "unbalanced", "escaped-quote", "escaped-backslash", "unicode-escape"],
)
def test_brackets_inside_strings_do_not_count_as_nesting(client: Any, text: str) -> None:
    body = json.dumps(valid_call()).replace('"id": "p1"', '"id": "p1", "text": "' + text + '"', 1)
    assert client.post(CALL, data=body.encode(), content_type="application/json").status_code == 200


# ----------------------------------------------------------------------------- huge arrays


def _with(base: Callable[[], dict[str, Any]], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    body = base()
    node: Any = body
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return body


HUGE: list[tuple[str, str, dict[str, Any], int]] = [
    ("feedback-200k-bad-items", FEEDBACK, {"feedback": [1] * 200_000}, 413),  # over MAX_FEEDBACK_ITEMS
    (
        "feedback-suggestions-200k",
        FEEDBACK,
        _with(valid_feedback, ("feedback", 0, "acceptedSuggestions"), [{}] * 200_000),
        400,
    ),
    ("selections-500k", CALL, _with(valid_call, ("context", "selections"), ["ServiceRequest/x"] * 500_000), 200),
    ("prefetch-200k-empty-entries", CALL, _with(valid_call, ("prefetch", "conditions", "entry"), [{}] * 200_000), 200),
    ("prefetch-500k-keys", CALL, _with(valid_call, ("prefetch",), {f"k{i}": None for i in range(500_000)}), 412),
    ("context-array", CALL, _with(valid_call, ("context",), [0] * 500_000), 400),
]


@pytest.mark.parametrize(("endpoint", "body", "status"), [h[1:] for h in HUGE], ids=[h[0] for h in HUGE])
def test_huge_arrays_are_answered_quickly_and_boundedly(client: Any, endpoint: str, body: Any, status: int) -> None:
    response = client.post(endpoint, data=json.dumps(body), content_type="application/json")
    assert response.status_code == status, response.get_data(as_text=True)[:300]
    assert len(response.get_data()) < 200_000  # the answer does not echo a problem per item
    if status >= 400:
        outcome_of(response, status)


# ----------------------------------------------------------------------------- wrong types, field by field

WRONG_CALL: list[tuple[tuple[Any, ...], Any, str]] = [
    (("hook",), None, "hook"),
    (("hook",), 7, "hook"),
    (("hook",), ["patient-view"], "hook"),
    (("hook",), "order-sign", "hook"),
    (("hook",), "", "hook"),
    (("hookInstance",), None, "hookInstance"),
    (("hookInstance",), 12345, "hookInstance"),
    (("hookInstance",), "", "hookInstance"),
    (("hookInstance",), "x" * 300, "hookInstance"),
    (("hookInstance",), "abc\u0000def", "hookInstance"),
    (("hookInstance",), {"id": 1}, "hookInstance"),
    (("context",), None, "context"),
    (("context",), "Patient/p1", "context"),
    (("context",), ["p1"], "context"),
    (("context", "patientId"), 1, "context.patientId"),
    (("context", "patientId"), "", "context.patientId"),
    (("context", "patientId"), None, "context.patientId"),
    (("context", "userId"), {"ref": "x"}, "context.userId"),
    (("context", "encounterId"), False, "context.encounterId"),
    (("context", "selections"), "ServiceRequest/1", "context.selections"),
    (("context", "selections"), [1, 2], "context.selections"),
    (("context", "draftOrders"), [], "context.draftOrders"),
    (("context", "draftOrders"), {"resourceType": "Observation"}, "context.draftOrders"),
    (("fhirServer",), 443, "fhirServer"),
    (("fhirServer",), "ftp://ehr.example.org/fhir", "fhirServer"),
    (("fhirServer",), "not a url", "fhirServer"),
    (("fhirServer",), ["https://ehr.example.org"], "fhirServer"),
    (("fhirAuthorization",), "Bearer abc", "fhirAuthorization"),
    (("prefetch",), [], "prefetch"),
    (("prefetch",), "Patient/p1", "prefetch"),
    (("prefetch", "patient"), "Patient/p1", "prefetch.patient"),
    (("prefetch", "conditions"), [1], "prefetch.conditions"),
    (("extension",), [], "extension"),
    (("extension",), "x", "extension"),
]

AUTH = {"access_token": "t", "token_type": "Bearer", "expires_in": 300, "scope": "patient/*.read", "subject": "c"}
WRONG_AUTH: list[tuple[str, Any]] = [
    ("access_token", None),
    ("access_token", 5),
    ("access_token", ""),
    ("token_type", "MAC"),
    ("token_type", None),
    ("expires_in", "300"),
    ("expires_in", -1),
    ("expires_in", True),
    ("expires_in", 1.5),
    ("scope", 1),
    ("scope", None),
    ("subject", []),
    ("subject", None),
]


def _call_with(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    return _with(valid_call, path, value)


def _auth_with(field: str, value: Any) -> dict[str, Any]:
    body = valid_call()
    body["fhirServer"] = "https://ehr.example.org/fhir"
    auth = dict(AUTH)
    if value is None:
        del auth[field]
    else:
        auth[field] = value
    body["fhirAuthorization"] = auth
    return body


@pytest.mark.parametrize(
    ("body", "field"),
    [(_call_with(p, v), f) for p, v, f in WRONG_CALL]
    + [(_auth_with(f, v), f"fhirAuthorization.{f}") for f, v in WRONG_AUTH]
    + [
        ({k: v for k, v in valid_call().items() if k != "hook"}, "hook"),
        ({k: v for k, v in valid_call().items() if k != "hookInstance"}, "hookInstance"),
        ({k: v for k, v in valid_call().items() if k != "context"}, "context"),
        (_call_with(("context",), {"userId": "Practitioner/1"}), "context.patientId"),
        (_call_with(("fhirAuthorization",), AUTH), "fhirAuthorization"),
    ],
    ids=[f"{'.'.join(map(str, p))}={json.dumps(v)[:20]}" for p, v, _ in WRONG_CALL]
    + [f"fhirAuthorization.{f}={json.dumps(v)}" for f, v in WRONG_AUTH]
    + ["no-hook", "no-hookInstance", "no-context", "no-patientId", "auth-without-fhirServer"],
)
def test_wrong_type_in_hook_request_field_is_400_naming_it(client: Any, body: dict[str, Any], field: str) -> None:
    diagnostics = outcome_of(client.post(CALL, json=body), 400)
    assert f"{field}:" in diagnostics


@pytest.mark.parametrize("body", [[], "patient-view", 1, None, True], ids=["array", "string", "number", "null", "true"])
@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_non_object_body_is_400(client: Any, endpoint: str, body: Any) -> None:
    diagnostics = outcome_of(client.post(endpoint, data=json.dumps(body), content_type="application/json"), 400)
    assert "feedback" in diagnostics if endpoint == FEEDBACK else "JSON object" in diagnostics


def _item_with(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    return _with(valid_feedback, ("feedback", 0, *path), value)


WRONG_FEEDBACK: list[tuple[dict[str, Any], str]] = [
    ({"feedback": "accepted"}, "feedback"),
    ({"feedback": []}, "feedback"),
    ({"feedback": {"card": "x"}}, "feedback"),
    ({}, "feedback"),
    ({"feedback": ["x"]}, "feedback[0]"),
    ({"feedback": [None]}, "feedback[0]"),
    (_item_with(("card",), 42), "feedback[0].card"),
    (_item_with(("card",), ""), "feedback[0].card"),
    (_item_with(("card",), None), "feedback[0].card"),
    (_item_with(("card",), "c" * 101), "feedback[0].card"),
    (_item_with(("card",), "a\u0000b"), "feedback[0].card"),
    (_item_with(("outcome",), "maybe"), "feedback[0].outcome"),
    (_item_with(("outcome",), 1), "feedback[0].outcome"),
    (_item_with(("outcome",), None), "feedback[0].outcome"),
    (_item_with(("acceptedSuggestions",), "s1"), "feedback[0].acceptedSuggestions"),
    (_item_with(("acceptedSuggestions",), [1]), "feedback[0].acceptedSuggestions"),
    (_item_with(("acceptedSuggestions",), [{"id": 1}]), "feedback[0].acceptedSuggestions"),
    (_item_with(("outcome",), "accepted"), "feedback[0].acceptedSuggestions"),
    (_item_with(("overrideReason",), "patient declined"), "feedback[0].overrideReason"),
    (_item_with(("overrideReason",), {}), "feedback[0].overrideReason"),
    (_item_with(("overrideReason", "reason"), "declined"), "feedback[0].overrideReason.reason"),
    (_item_with(("overrideReason", "reason"), {"code": 1, "system": "s"}), "feedback[0].overrideReason.reason"),
    (_item_with(("overrideReason", "reason", "code"), "c" * 201), "feedback[0].overrideReason.reason.code"),
    (_item_with(("overrideReason", "reason", "system"), "s" * 301), "feedback[0].overrideReason.reason.system"),
    (_item_with(("overrideReason", "userComment"), 5), "feedback[0].overrideReason.userComment"),
    (_item_with(("overrideReason", "userComment"), "a\u0000b"), "feedback[0].overrideReason.userComment"),
    (_item_with(("outcomeTimestamp",), 1717243200), "feedback[0].outcomeTimestamp"),
    (_item_with(("outcomeTimestamp",), "yesterday"), "feedback[0].outcomeTimestamp"),
    (_item_with(("outcomeTimestamp",), "2026-06-01T12:00:00"), "feedback[0].outcomeTimestamp"),
    (_item_with(("outcomeTimestamp",), "2026-06-01"), "feedback[0].outcomeTimestamp"),
    (_item_with(("outcomeTimestamp",), None), "feedback[0].outcomeTimestamp"),
    ({"feedback": [valid_feedback()["feedback"][0], {"card": 1}]}, "feedback[1].card"),
]


@pytest.mark.parametrize(("body", "field"), WRONG_FEEDBACK, ids=[f"{i}-{w[1]}" for i, w in enumerate(WRONG_FEEDBACK)])
def test_wrong_type_in_feedback_field_is_400_naming_it(client: Any, body: dict[str, Any], field: str) -> None:
    diagnostics = outcome_of(client.post(FEEDBACK, json=body), 400)
    assert field in diagnostics


def test_unknown_service_is_404_before_the_body_is_read(client: Any) -> None:
    for endpoint in ("/cds-services/no-such-service", "/cds-services/no-such-service/feedback"):
        outcome_of(client.post(endpoint, data=b"\xff", content_type="application/json"), 404)


@pytest.mark.parametrize(
    ("method", "path"), [("PUT", CALL), ("DELETE", FEEDBACK), ("GET", CALL), ("PATCH", "/cds-services")]
)
def test_wrong_method_is_405_json(client: Any, method: str, path: str) -> None:
    response = client.open(path, method=method)
    outcome_of(response, 405)
    assert "Allow" in response.headers
