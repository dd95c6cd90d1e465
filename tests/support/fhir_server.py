"""A real FHIR R4 server on loopback for tests (no mocks).

``FhirTestServer`` plays the EHR's FHIR server that spinecds calls when a CDS Hooks
request lacks a prefetch key.  It binds ``127.0.0.1`` on an ephemeral port, serves from
a daemon thread, and supports:

* read (``GET /fhir/{type}/{id}``) and search (``GET /fhir/{type}?...``) with paging
  through absolute ``next`` links (``_count`` / ``_offset``);
* a request log, so tests can assert on headers (e.g. the bearer token) and call counts;
* an optional required bearer token (401 otherwise);
* fault injection (global, per resource type, or per static path, optionally only on
  the Nth page of a search);
* static JSON documents at arbitrary paths (e.g. a JWKS at ``/jwks.json``).

Standard library only.  Example::

    with FhirTestServer(require_token="abc") as fhir:
        fhir.load_ndjson("Condition.000.ndjson")
        fhir.set_fault("500", resource_type="Observation")
        ...  # point the service at fhir.base_url
"""

from __future__ import annotations

import copy
import json
import socketserver
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, get_args
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from service.cds.request_builder import build_request

__all__ = [
    "DEFAULT_HUGE_BYTES",
    "DEFAULT_PAGE_SIZE",
    "DEFAULT_SLOW_SECONDS",
    "FAULT_MODES",
    "FaultMode",
    "FhirTestServer",
    "RecordedRequest",
    "fhir_server_request",
]

Resource = dict[str, Any]
Predicate = Callable[[Resource], bool]
FaultMode = Literal["500", "garbage", "html", "slow", "404", "bundle-of-wrong-type", "redirect", "huge"]
FAULT_MODES: tuple[str, ...] = get_args(FaultMode)

HOST = "127.0.0.1"
BASE_PATH = "/fhir"
FHIR_JSON = "application/fhir+json"
DEFAULT_PAGE_SIZE = 50
DEFAULT_SLOW_SECONDS = 5.0
DEFAULT_HUGE_BYTES = 20 * 1024 * 1024

_MEDICATION_TYPES = frozenset(
    {"MedicationRequest", "MedicationStatement", "MedicationAdministration", "MedicationDispense"}
)
# Fields consulted (first present wins) when sorting by ``-date``; Periods use ``start``.
_DATE_FIELDS = (
    "effectiveDateTime",
    "effectivePeriod",
    "issued",
    "recordedDate",
    "authoredOn",
    "performedDateTime",
    "performedPeriod",
    "onsetDateTime",
)
_GARBAGE_BODY = b'{"resourceType": "Bundle", "entry": [{"resource": <<< not JSON, truncated \x00'
_HTML_BODY = (
    b"<!DOCTYPE html><html><head><title>Sign in</title></head>"
    b"<body><h1>Single sign-on</h1><form method='post'><input name='user'></form></body></html>"
)
_WRONG_TYPE_BODY: Resource = {
    "resourceType": "Basic",
    "id": "not-a-bundle",
    "code": {"text": "Injected fault: this JSON object is not a Bundle"},
}


# --------------------------------------------------------------------------- request log


@dataclass
class RecordedRequest:
    """One request received by the server, in arrival order."""

    method: str
    path: str
    """Path plus query string exactly as sent, e.g. ``/fhir/Condition?patient=p1``."""
    headers: dict[str, str]
    ignored_params: list[tuple[str, str]] = field(default_factory=list)
    """Search parameters the server did not understand and therefore ignored."""

    def header(self, name: str) -> str | None:
        """Return a header value, matching the name case-insensitively."""
        wanted = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == wanted), None)

    @property
    def authorization(self) -> str | None:
        """The ``Authorization`` header, if sent."""
        return self.header("Authorization")

    @property
    def params(self) -> list[tuple[str, str]]:
        """Decoded query parameters, in order."""
        return parse_qsl(urlsplit(self.path).query, keep_blank_values=True)


# --------------------------------------------------------------------------- search logic


class _BadRequest(ValueError):
    """A search request the server rejects with 400."""


def _split(value: str) -> list[str]:
    """Split a comma-separated (OR) parameter value."""
    return [part for part in value.split(",") if part]


def _codings(concepts: Any) -> list[dict[str, Any]]:
    """All codings of a CodeableConcept or of a list of CodeableConcepts."""
    items = concepts if isinstance(concepts, list) else [concepts]
    return [
        coding
        for concept in items
        if isinstance(concept, dict)
        for coding in concept.get("coding", [])
        if isinstance(coding, dict)
    ]


def _token_matches(coding: dict[str, Any], token: str) -> bool:
    """FHIR token semantics: ``code``, ``system|code``, ``system|`` or ``|code``."""
    if "|" not in token:
        return bool(coding.get("code") == token)
    system, _, code = token.partition("|")
    if system and coding.get("system") != system:
        return False
    if not system and "system" in coding:
        return False
    return not code or coding.get("code") == code


def _any_token(codings: list[dict[str, Any]], value: str) -> bool:
    """True if any coding matches any of the comma-separated tokens."""
    tokens = _split(value)
    return any(_token_matches(coding, token) for coding in codings for token in tokens)


def _last_segment(reference: str) -> str:
    """``Patient/123`` or ``http://x/fhir/Patient/123`` -> ``123``."""
    return reference.rstrip("/").rsplit("/", 1)[-1]


def _references_patient(resource: Resource, patient_id: str) -> bool:
    """True if ``subject`` or ``patient`` references ``Patient/<id>`` (or ends in ``/<id>``)."""
    for key in ("subject", "patient"):
        target = resource.get(key)
        reference = target.get("reference") if isinstance(target, dict) else None
        if isinstance(reference, str) and (
            reference == f"Patient/{patient_id}" or reference.endswith(f"/{patient_id}")
        ):
            return True
    return False


def _patient_filter(resource_type: str, value: str) -> Predicate:
    ids = [_last_segment(v) for v in _split(value)]
    if resource_type == "Patient":
        return lambda r: r.get("id") in ids
    return lambda r: any(_references_patient(r, pid) for pid in ids)


def _id_filter(resource_type: str, value: str) -> Predicate:
    ids = _split(value)
    return lambda r: r.get("id") in ids


def _code_filter(resource_type: str, value: str) -> Predicate:
    element = "medicationCodeableConcept" if resource_type in _MEDICATION_TYPES else "code"
    return lambda r: _any_token(_codings(r.get(element)), value)


def _clinical_status_filter(resource_type: str, value: str) -> Predicate:
    return lambda r: _any_token(_codings(r.get("clinicalStatus")), value)


def _status_filter(resource_type: str, value: str) -> Predicate:
    statuses = _split(value)
    return lambda r: r.get("status") in statuses


def _category_filter(resource_type: str, value: str) -> Predicate:
    return lambda r: _any_token(_codings(r.get("category")), value)


_FILTERS: dict[str, Callable[[str, str], Predicate]] = {
    "patient": _patient_filter,
    "subject": _patient_filter,
    "_id": _id_filter,
    "code": _code_filter,
    "clinical-status": _clinical_status_filter,
    "status": _status_filter,
    "category": _category_filter,
}


def _non_negative_int(name: str, value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise _BadRequest(f"{name} must be an integer, got {value!r}") from None
    if number < 0:
        raise _BadRequest(f"{name} must not be negative, got {number}")
    return number


@dataclass(frozen=True)
class _SearchQuery:
    """A parsed search: filters, paging and the parameters to repeat in page links."""

    resource_type: str
    params: list[tuple[str, str]]
    predicates: list[Predicate]
    count: int
    offset: int
    sort_by_date_desc: bool
    ignored: list[tuple[str, str]]

    @property
    def page(self) -> int:
        """1-based page number of this request."""
        return self.offset // self.count + 1 if self.count else 1


def _parse_search(resource_type: str, query: str, default_count: int) -> _SearchQuery:
    """Parse a search query string; raises ``_BadRequest`` for bad paging values."""
    count, offset, sort_desc = default_count, 0, False
    kept: list[tuple[str, str]] = []
    predicates: list[Predicate] = []
    ignored: list[tuple[str, str]] = []
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name == "_count":
            count = _non_negative_int(name, value)
        elif name == "_offset":
            offset = _non_negative_int(name, value)
        else:
            kept.append((name, value))
            if name == "_sort":
                sort_desc = sort_desc or "-date" in _split(value)
            elif name in _FILTERS:
                predicates.append(_FILTERS[name](resource_type, value))
            else:
                ignored.append((name, value))
    return _SearchQuery(resource_type, kept, predicates, count, offset, sort_desc, ignored)


def _date_key(resource: Resource) -> tuple[bool, str]:
    """Sort key: (has a date, ISO date string); ISO strings compare lexicographically."""
    for name in _DATE_FIELDS:
        value = resource.get(name)
        if isinstance(value, dict):
            value = value.get("start")
        if isinstance(value, str):
            return True, value
    return False, ""


def _run_search(resources: list[Resource], query: _SearchQuery) -> list[Resource]:
    """All matching resources, in insertion order or by descending date."""
    matches = [r for r in resources if all(p(r) for p in query.predicates)]
    if query.sort_by_date_desc:
        matches.sort(key=_date_key, reverse=True)
    return matches


def _page_url(base_url: str, query: _SearchQuery, offset: int) -> str:
    params = [*query.params, ("_count", str(query.count)), ("_offset", str(offset))]
    return f"{base_url}/{query.resource_type}?{urlencode(params, safe=',:/')}"


def _searchset(matches: list[Resource], query: _SearchQuery, self_url: str, base_url: str) -> Resource:
    """Build the searchset Bundle for one page of ``matches``."""
    page = matches[query.offset : query.offset + query.count]
    links = [{"relation": "self", "url": self_url}]
    next_offset = query.offset + query.count
    if query.count and next_offset < len(matches):
        links.append({"relation": "next", "url": _page_url(base_url, query, next_offset)})
    bundle: Resource = {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "type": "searchset",
        "total": len(matches),
        "link": links,
    }
    if page:
        bundle["entry"] = [
            {
                "fullUrl": f"{base_url}/{r['resourceType']}/{r['id']}",
                "resource": r,
                "search": {"mode": "match"},
            }
            for r in page
        ]
    return bundle


def _capability_statement() -> Resource:
    """What a browser client (the CDS Hooks Sandbox) reads at ``/metadata`` before using the server."""
    searchable = [
        "Patient",
        "Condition",
        "Observation",
        "Procedure",
        "MedicationRequest",
        "MedicationStatement",
        "AllergyIntolerance",
        "DiagnosticReport",
        "ServiceRequest",
        "Encounter",
        "Coverage",
    ]
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-01-01",
        "kind": "instance",
        "fhirVersion": "4.0.1",
        "format": ["json"],
        "rest": [
            {
                "mode": "server",
                "resource": [
                    {"type": t, "interaction": [{"code": "read"}, {"code": "search-type"}]} for t in searchable
                ],
            }
        ],
    }


def _operation_outcome(code: str, diagnostics: str) -> Resource:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": code, "diagnostics": diagnostics}],
    }


def _parse_fhir_path(path: str) -> tuple[str, str | None] | None:
    """``/fhir/T`` -> (T, None); ``/fhir/T/id`` -> (T, id); anything else -> None."""
    if not path.startswith(BASE_PATH + "/"):
        return None
    parts = [unquote(p) for p in path[len(BASE_PATH) + 1 :].split("/")]
    if not parts[0] or len(parts) > 2 or (len(parts) == 2 and not parts[1]):
        return None
    return parts[0], parts[1] if len(parts) == 2 else None


# --------------------------------------------------------------------------- loading helpers


def _rewrite_references(node: Any, targets: dict[str, str]) -> None:
    """Replace every ``reference`` found in ``targets`` in place."""
    if isinstance(node, dict):
        reference = node.get("reference")
        if isinstance(reference, str) and reference in targets:
            node["reference"] = targets[reference]
        for value in node.values():
            _rewrite_references(value, targets)
    elif isinstance(node, list):
        for value in node:
            _rewrite_references(value, targets)


def _resolve_urn_uuids(resources: list[Resource], full_urls: dict[str, str]) -> None:
    """Turn ``urn:uuid:`` references into ``Type/id``, as a server does for a transaction."""
    targets = {f"urn:uuid:{r['id']}": f"{r['resourceType']}/{r['id']}" for r in resources}
    targets.update(full_urls)
    for resource in resources:
        _rewrite_references(resource, targets)


def _bundle_resources(bundle: Resource) -> tuple[list[Resource], dict[str, str]]:
    """Copies of a Bundle's resources (ids ensured) and a map fullUrl -> ``Type/id``."""
    resources: list[Resource] = []
    full_urls: dict[str, str] = {}
    for entry in bundle.get("entry", []):
        if not isinstance(entry.get("resource"), dict):
            continue
        resource = copy.deepcopy(entry["resource"])
        full_url = entry.get("fullUrl")
        if "id" not in resource and isinstance(full_url, str) and full_url.startswith("urn:uuid:"):
            resource["id"] = full_url.removeprefix("urn:uuid:")
        resource.setdefault("id", str(uuid.uuid4()))
        if isinstance(full_url, str):
            full_urls[full_url] = f"{resource['resourceType']}/{resource['id']}"
        resources.append(resource)
    return resources, full_urls


def _huge_bundle(size: int, chunk_size: int = 64 * 1024) -> tuple[int, Iterator[bytes]]:
    """A valid JSON searchset Bundle of ``size`` bytes (or its minimum size, if larger).

    Returns the exact length and a lazy chunk iterator, so the body is never held in memory.
    """
    entry = (
        '{"fullUrl":"urn:uuid:huge-%09d","resource":'
        '{"resourceType":"Basic","id":"huge-%09d","code":{"text":"padding"}}}'
    )
    entry_len = len(entry % (0, 0))
    tail = b"]}"

    def head(n: int) -> bytes:
        return b'{"resourceType":"Bundle","type":"searchset","total":%d,"entry":[' % n

    n = max(0, (size - len(head(0)) - len(tail) - 20) // (entry_len + 1))
    fixed = len(head(n)) + n * entry_len + max(n - 1, 0) + len(tail)
    padding = max(0, size - fixed)

    def chunks() -> Iterator[bytes]:
        yield head(n)
        per_chunk = max(1, chunk_size // (entry_len + 1))
        for start in range(0, n, per_chunk):
            stop = min(n, start + per_chunk)
            separator = b"," if stop < n else b""
            yield ",".join(entry % (i, i) for i in range(start, stop)).encode() + separator
        for start in range(0, padding, chunk_size):
            yield b" " * min(chunk_size, padding - start)
        yield tail

    return fixed + padding, chunks()


# --------------------------------------------------------------------------- HTTP layer


class _HTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that never blocks on close and knows its FhirTestServer."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, app: FhirTestServer) -> None:
        self.app = app
        super().__init__((HOST, 0), _Handler)

    def server_bind(self) -> None:
        """Bind without the (possibly slow) reverse DNS lookup HTTPServer does."""
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)


class _Handler(BaseHTTPRequestHandler):
    """Routes one request: log, static JSON, auth, faults, then read or search."""

    server: _HTTPServer
    server_version = "FhirTestServer/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output quiet."""

    # -- entry points

    def do_GET(self) -> None:
        record = self.server.app._record(self)
        try:
            if self.server.app.browser and urlsplit(self.path).path == f"{BASE_PATH}/metadata":
                self._send_json(HTTPStatus.OK, _capability_statement())
                return
            self._dispatch(record)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def do_POST(self) -> None:
        """``POST [type]/_search`` (form-encoded parameters, as browsers' FHIR clients send) when ``browser``."""
        url = urlsplit(self.path)
        route = _parse_fhir_path(url.path) if self.server.app.browser else None
        if route is None or route[1] != "_search":
            self._method_not_allowed()
            return
        length = int(self.headers.get("Content-Length") or 0)
        form = self.rfile.read(length).decode("utf-8", "replace") if length else ""
        self.path = f"{url.path[: -len('/_search')]}?{'&'.join(p for p in (url.query, form) if p)}"
        self.do_GET()

    def do_OPTIONS(self) -> None:
        """CORS preflight (``browser`` only)."""
        if not self.server.app.browser:
            self._method_not_allowed()
            return
        self.server.app._record(self)
        self.send_response(HTTPStatus.NO_CONTENT)
        self.send_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
        self.send_header("Access-Control-Allow-Headers", self.headers.get("Access-Control-Request-Headers") or "*")
        self.send_header("Access-Control-Max-Age", "600")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def end_headers(self) -> None:
        if self.server.app.browser:
            self.send_header("Access-Control-Allow-Origin", "*")
        super().end_headers()

    def _method_not_allowed(self) -> None:
        self.server.app._record(self)
        self._send_outcome(HTTPStatus.METHOD_NOT_ALLOWED, "not-supported", f"{self.command} not supported")

    do_PUT = do_PATCH = do_DELETE = _method_not_allowed

    # -- routing

    def _dispatch(self, record: RecordedRequest) -> None:
        app = self.server.app
        url = urlsplit(self.path)
        static = app._static(url.path)
        if static is not None:
            if not self._apply_fault(app._fault_for(url.path, page=None)):
                self._send_json(HTTPStatus.OK, static, "application/json")
            return
        if not app._authorized(self.headers.get("Authorization")):
            self._send_outcome(
                HTTPStatus.UNAUTHORIZED,
                "login",
                "Missing or invalid bearer token",
                {"WWW-Authenticate": 'Bearer realm="fhir"'},
            )
            return
        route = _parse_fhir_path(url.path)
        if route is None:
            self._send_outcome(HTTPStatus.NOT_FOUND, "not-found", f"Unknown path {url.path}")
            return
        resource_type, resource_id = route
        if resource_id is not None:
            if not self._apply_fault(app._fault_for(resource_type, page=None)):
                self._read(resource_type, resource_id)
            return
        try:
            query = _parse_search(resource_type, url.query, app.page_size)
        except _BadRequest as exc:
            self._send_outcome(HTTPStatus.BAD_REQUEST, "invalid", str(exc))
            return
        record.ignored_params.extend(query.ignored)
        if not self._apply_fault(app._fault_for(resource_type, page=query.page)):
            self._search(query)

    def _read(self, resource_type: str, resource_id: str) -> None:
        resource = self.server.app.get(resource_type, resource_id)
        if resource is None:
            self._send_outcome(HTTPStatus.NOT_FOUND, "not-found", f"{resource_type}/{resource_id} is not known")
        else:
            self._send_json(HTTPStatus.OK, resource)

    def _search(self, query: _SearchQuery) -> None:
        app = self.server.app
        matches = _run_search(app.resources(query.resource_type), query)
        bundle = _searchset(matches, query, app.origin + self.path, app.base_url)
        self._send_json(HTTPStatus.OK, bundle)

    # -- faults

    def _apply_fault(self, mode: FaultMode | None) -> bool:
        """Inject ``mode``; True when the response is finished (nothing more to send)."""
        if mode is None:
            return False
        if mode == "slow":
            return self._fault_slow()
        app = self.server.app
        if mode == "500":
            self._send_outcome(HTTPStatus.INTERNAL_SERVER_ERROR, "exception", "Injected fault: 500")
        elif mode == "404":
            self._send_outcome(HTTPStatus.NOT_FOUND, "not-found", "Injected fault: 404")
        elif mode == "garbage":
            self._send_bytes(HTTPStatus.OK, _GARBAGE_BODY, FHIR_JSON)
        elif mode == "html":
            self._send_bytes(HTTPStatus.OK, _HTML_BODY, "text/html; charset=utf-8")
        elif mode == "bundle-of-wrong-type":
            self._send_json(HTTPStatus.OK, _WRONG_TYPE_BODY)
        elif mode == "redirect":
            self._fault_redirect(app.redirect_to)
        elif mode == "huge":
            length, chunks = _huge_bundle(app.huge_bytes)
            self._send_stream(HTTPStatus.OK, length, chunks, FHIR_JSON)
        return True

    def _fault_slow(self) -> bool:
        """Sleep ``slow_seconds``; if the server stops meanwhile, drop the connection."""
        if self.server.app._stopping.wait(self.server.app.slow_seconds):
            self.close_connection = True
            return True
        return False

    def _fault_redirect(self, location: str | None) -> None:
        if location is None:
            self._send_outcome(HTTPStatus.INTERNAL_SERVER_ERROR, "exception", "redirect fault set without redirect_to")
        else:
            self._send_bytes(HTTPStatus.FOUND, b"", "text/plain", {"Location": location})

    # -- response writing

    def _send_outcome(
        self, status: HTTPStatus, code: str, diagnostics: str, headers: dict[str, str] | None = None
    ) -> None:
        self._send_json(status, _operation_outcome(code, diagnostics), headers=headers)

    def _send_json(
        self,
        status: HTTPStatus,
        body: Resource,
        content_type: str = FHIR_JSON,
        headers: dict[str, str] | None = None,
    ) -> None:
        self._send_bytes(status, json.dumps(body).encode(), content_type, headers)

    def _send_bytes(
        self, status: HTTPStatus, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self._send_stream(status, len(body), [body], content_type, headers)

    def _send_stream(
        self,
        status: HTTPStatus,
        length: int,
        chunks: Iterable[bytes],
        content_type: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Send a response of ``length`` bytes, writing the body chunk by chunk."""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(length))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        for chunk in chunks:
            self.wfile.write(chunk)


# --------------------------------------------------------------------------- public server


class FhirTestServer:
    """A live FHIR R4 server on ``127.0.0.1:<ephemeral port>`` for tests.

    All attributes may be changed while the server runs:

    * ``page_size``: default ``_count`` for searches.
    * ``require_token``: when set, FHIR requests need ``Authorization: Bearer <token>``
      (static JSON paths stay public).
    * ``fault``: global fault (applies to every path, static ones included);
      per-target faults are set with :meth:`set_fault`.  Faults fire after the token
      check, so an unauthenticated request still gets 401.
    * ``fail_on_page``: when set, faults only fire on that 1-based page of a search;
      reads and static paths are then never faulted.
    * ``slow_seconds``, ``redirect_to``, ``huge_bytes``: parameters of the
      ``slow``, ``redirect`` and ``huge`` faults.
    * ``browser``: usable by a web app in a browser (the CDS Hooks Sandbox): CORS headers and
      preflights, ``GET /metadata`` (a CapabilityStatement) and ``POST [type]/_search``.

    ``resources`` are stored at once, as with :meth:`add_many`.
    """

    def __init__(
        self,
        *,
        resources: Iterable[Resource] = (),
        page_size: int = DEFAULT_PAGE_SIZE,
        require_token: str | None = None,
        fault: FaultMode | None = None,
        fail_on_page: int | None = None,
        slow_seconds: float = DEFAULT_SLOW_SECONDS,
        redirect_to: str | None = None,
        huge_bytes: int = DEFAULT_HUGE_BYTES,
        browser: bool = False,
    ) -> None:
        self.browser = browser
        self.page_size = page_size
        self.require_token = require_token
        self._fault: FaultMode | None = _checked_fault(fault)
        self._faults_by_target: dict[str, FaultMode] = {}
        self.fail_on_page = fail_on_page
        self.slow_seconds = slow_seconds
        self.redirect_to = redirect_to
        self.huge_bytes = huge_bytes
        self._resources: dict[tuple[str, str], Resource] = {}
        self._static_json: dict[str, Any] = {}
        self._log: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.add_many(resources)

    # -- lifecycle

    def start(self) -> FhirTestServer:
        """Bind an ephemeral loopback port and serve from a daemon thread."""
        if self._httpd is not None:
            raise RuntimeError("FhirTestServer is already running")
        self._stopping.clear()
        self._httpd = _HTTPServer(self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"FhirTestServer:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket; idempotent, never waits for slow requests."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FhirTestServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """True between start() and stop()."""
        return self._httpd is not None

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("FhirTestServer is not running")
        return int(self._httpd.server_address[1])

    @property
    def origin(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://{HOST}:{self.port}"

    @property
    def base_url(self) -> str:
        """FHIR base, ``http://127.0.0.1:<port>/fhir``; use as the request's ``fhirServer``."""
        return self.origin + BASE_PATH

    def url(self, path: str) -> str:
        """Absolute URL of a server path, e.g. ``url("/jwks.json")``."""
        return self.origin + path

    # -- data

    def add(self, resource: Resource) -> str:
        """Store a copy of ``resource`` (replacing same type+id); returns its id (assigned if absent)."""
        if not isinstance(resource.get("resourceType"), str):
            raise ValueError("resource has no resourceType")
        stored = copy.deepcopy(resource)
        stored.setdefault("id", str(uuid.uuid4()))
        with self._lock:
            self._resources[(stored["resourceType"], str(stored["id"]))] = stored
        return str(stored["id"])

    def add_many(self, resources: Iterable[Resource]) -> int:
        """Store each resource; returns how many were stored."""
        count = 0
        for resource in resources:
            self.add(resource)
            count += 1
        return count

    def load_bundle(self, bundle: Resource, *, resolve_urn_uuids: bool = True) -> int:
        """Store every entry's resource.

        With ``resolve_urn_uuids`` (default), ``urn:uuid:`` references to other entries are
        rewritten to ``Type/id``, as a FHIR server does when it processes a transaction.
        """
        if bundle.get("resourceType") != "Bundle":
            raise ValueError(f"not a Bundle: resourceType={bundle.get('resourceType')!r}")
        resources, full_urls = _bundle_resources(bundle)
        if resolve_urn_uuids:
            _resolve_urn_uuids(resources, full_urls)
        return self.add_many(resources)

    def load_ndjson(self, path: str | Path) -> int:
        """Store one resource per non-blank line of an NDJSON file (FHIR Bulk Data format)."""
        with open(path, encoding="utf-8") as lines:
            return self.add_many(json.loads(line) for line in lines if line.strip())

    def load_file(self, path: str | Path, *, resolve_urn_uuids: bool = True) -> int:
        """Load a JSON file holding a Bundle, a resource, a list of resources, or the
        AHRQ CQL-services exec format ``{"data": [resources...]}``; NDJSON by ``.ndjson`` suffix."""
        if str(path).endswith(".ndjson"):
            return self.load_ndjson(path)
        content = json.loads(Path(path).read_text(encoding="utf-8"))
        if isinstance(content, dict) and content.get("resourceType") == "Bundle":
            return self.load_bundle(content, resolve_urn_uuids=resolve_urn_uuids)
        if isinstance(content, dict) and "resourceType" in content:
            self.add(content)
            return 1
        items = content.get("data") if isinstance(content, dict) else content
        if not isinstance(items, list):
            raise ValueError(f"{path}: no resources found")
        return self.load_bundle(
            {"resourceType": "Bundle", "entry": [{"resource": r} for r in items]},
            resolve_urn_uuids=resolve_urn_uuids,
        )

    def get(self, resource_type: str, resource_id: str) -> Resource | None:
        """The stored resource (not a copy), or None."""
        with self._lock:
            return self._resources.get((resource_type, resource_id))

    def resources(self, resource_type: str | None = None) -> list[Resource]:
        """Stored resources (of one type, if given), in insertion order."""
        with self._lock:
            return [r for (t, _), r in self._resources.items() if resource_type in (None, t)]

    def clear_resources(self) -> None:
        with self._lock:
            self._resources.clear()

    def serve_json(self, path: str, obj: Any) -> None:
        """Serve ``obj`` as ``application/json`` at ``path`` (e.g. ``/jwks.json``), no auth required."""
        if not path.startswith("/"):
            raise ValueError("path must start with '/'")
        with self._lock:
            self._static_json[path] = copy.deepcopy(obj)

    # -- faults

    @property
    def fault(self) -> FaultMode | None:
        """Global fault, or None."""
        return self._fault

    @fault.setter
    def fault(self, mode: FaultMode | None) -> None:
        self._fault = _checked_fault(mode)

    def set_fault(self, mode: FaultMode | None, resource_type: str | None = None) -> None:
        """Set (or clear, with None) a fault globally or for one target.

        A target is a resource type (``"Observation"``) or a static path (``"/jwks.json"``);
        a target's own fault takes precedence over the global one.
        """
        mode = _checked_fault(mode)
        if mode == "redirect" and self.redirect_to is None:
            raise ValueError("set redirect_to before enabling the redirect fault")
        if resource_type is None:
            self._fault = mode
        elif mode is None:
            self._faults_by_target.pop(resource_type, None)
        else:
            self._faults_by_target[resource_type] = mode

    def clear_faults(self) -> None:
        """Remove all faults and ``fail_on_page``."""
        self._fault = None
        self._faults_by_target.clear()
        self.fail_on_page = None

    # -- request log

    @property
    def requests(self) -> list[RecordedRequest]:
        """Copy of the request log, oldest first."""
        with self._lock:
            return list(self._log)

    @property
    def ignored_params(self) -> list[tuple[str, str]]:
        """Every ignored search parameter across the log."""
        return [param for record in self.requests for param in record.ignored_params]

    def clear_log(self) -> None:
        with self._lock:
            self._log.clear()

    # -- internals used by the handler

    def _record(self, handler: BaseHTTPRequestHandler) -> RecordedRequest:
        record = RecordedRequest(handler.command, handler.path, dict(handler.headers.items()))
        with self._lock:
            self._log.append(record)
        return record

    def _static(self, path: str) -> Any | None:
        with self._lock:
            return self._static_json.get(path)

    def _authorized(self, authorization: str | None) -> bool:
        if self.require_token is None:
            return True
        scheme, _, token = (authorization or "").partition(" ")
        return scheme.lower() == "bearer" and token.strip() == self.require_token

    def _fault_for(self, target: str, page: int | None) -> FaultMode | None:
        """The fault to inject for ``target`` on ``page`` (None for reads/static paths)."""
        mode = self._faults_by_target.get(target, self._fault)
        if mode is not None and self.fail_on_page is not None and page != self.fail_on_page:
            return None
        return mode


def fhir_server_request(
    fhir_server: str, access_token: str, *, patient_id: str, prefetch: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A patient-view CDS Hooks request naming ``fhir_server`` and a Bearer ``access_token`` for it, so
    that the service fetches from that server whatever ``prefetch`` (none when None) does not carry."""
    body = build_request(
        "patient-view",
        patient_id,
        [],
        user="Practitioner/x",
        documented=(),
        fhir_server=fhir_server,
        fhir_authorization={
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "patient/*.read",
            "subject": "spinecds",
        },
        hook_instance="d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
    )
    if prefetch is None:
        del body["prefetch"]
    else:
        body["prefetch"] = prefetch
    return body


def _checked_fault(mode: FaultMode | None) -> FaultMode | None:
    if mode is not None and mode not in FAULT_MODES:
        raise ValueError(f"unknown fault {mode!r}; expected one of {FAULT_MODES}")
    return mode
