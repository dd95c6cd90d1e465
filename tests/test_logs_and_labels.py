"""No secret in any log line, the server's own included; metric labels only from closed sets (real server).

gunicorn's gthread worker logged a malformed request with the parser's message, which quotes the
offending line: a header line without its colon (``Authorization Bearer <token>``) put the whole
token in a warning. The request parser is waitress's now (``service.serving_worker``), and every
JSON log line is scrubbed of credential-shaped text whoever wrote it (``service.ops.logging``).
Random HTTP method names, needing no token, each made a new metric series.
"""

from __future__ import annotations

import re
import socket
import uuid
from collections.abc import Iterator

import pytest
import requests
from support.gunicorn import SpinecdsServer

SECRET_JWT = "eyJhbGciOiJFUzM4NCJ9.eyJzZWNyZXQiOiJ0b2tlbi1" + uuid.uuid4().hex + "In0.c2lnbmF0dXJl"
SECRET_BASIC = "c3BpbmVjZHM6" + uuid.uuid4().hex
SECRET_OPAQUE = "opaque-" + uuid.uuid4().hex
KNOWN_METHODS = {"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "CONNECT", "other"}


@pytest.fixture(scope="module")
def server() -> Iterator[SpinecdsServer]:
    with SpinecdsServer({"SPINECDS_LOG_LEVEL": "DEBUG"}) as srv:
        yield srv


def _raw(server: SpinecdsServer, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except TimeoutError:
            pass
        return b"".join(chunks)


HEAD = "GET /cds-services HTTP/1.1\r\nHost: x\r\n"
MALFORMED = [
    HEAD + f"Authorization Bearer {SECRET_JWT}\r\n\r\n",
    HEAD + f"Authorization Basic {SECRET_BASIC}\r\n\r\n",
    HEAD + f"Authorization: Bearer {SECRET_OPAQUE}\r\nX-Broken {SECRET_OPAQUE}\r\n\r\n",
    HEAD + f"Authori\x01zation: Bearer {SECRET_JWT}\r\n\r\n",
    f"GET /cds-services?access_token={SECRET_OPAQUE} HTTP/1.1\r\nHost: x\r\n"
    + f" Authorization: Bearer {SECRET_JWT}\r\n\r\n",
    HEAD + f"Authorization: Bearer {SECRET_JWT}" + "A" * 9000 + "\r\n\r\n",
]


def test_malformed_requests_leave_no_secret_in_any_log_line(server: SpinecdsServer) -> None:
    for request in MALFORMED:
        answer = _raw(server, request.encode("latin-1"))
        assert re.match(rb"HTTP/1\.[01] [24]\d\d ", answer), answer[:200]  # refused, or read leniently
    assert requests.get(server.url("/health/live"), timeout=10).status_code == 200
    log = server.output()
    for secret in (SECRET_JWT, SECRET_BASIC, SECRET_OPAQUE, SECRET_JWT[:40], SECRET_BASIC[-20:], SECRET_OPAQUE[-20:]):
        assert secret not in log, f"secret in log: ...{log[max(0, log.find(secret) - 200) : log.find(secret) + 50]}"


def test_random_method_names_do_not_create_metric_series(server: SpinecdsServer) -> None:
    for _ in range(25):
        method = "X" + uuid.uuid4().hex[:10].upper().translate(str.maketrans("0123456789", "GHIJKLMNOP"))
        answer = _raw(server, f"{method} /cds-services HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        assert re.match(rb"HTTP/1\.[01] 4\d\d ", answer), answer[:200]
        _raw(server, f"{method} /nowhere/{uuid.uuid4().hex} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    text = requests.get(server.url("/metrics"), timeout=10).text
    methods = set(re.findall(r'^spinecds_http_requests_total\{[^}]*method="([^"]*)"', text, re.M))
    routes = set(re.findall(r'^spinecds_http_requests_total\{[^}]*route="([^"]*)"', text, re.M))
    assert methods <= KNOWN_METHODS, methods - KNOWN_METHODS
    assert "other" in methods
    assert not any("nowhere" in route for route in routes), routes
