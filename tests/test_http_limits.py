"""The bounded response read shared by the FHIR client and the JWKS fetch (service/http_limits.py)."""

from __future__ import annotations

import io
import socket
import threading
import time

import pytest
import requests
import urllib3
from requests.structures import CaseInsensitiveDict
from support.fhir_server import FhirTestServer

from service.auth.jwks import MAX_JWKS_BYTES, JwksError, fetch_jwks
from service.fhir.allowlist import FhirServerAllowlist
from service.fhir.client import FetchError, FetchLimits, FhirClient
from service.http_limits import CHUNK_BYTES, ResponseTooLarge, read_limited


def _response(raw: io.BytesIO, content_length: str | None) -> requests.Response:
    headers = {} if content_length is None else {"Content-Length": content_length}
    resp = requests.Response()
    resp.status_code = 200
    resp.headers = CaseInsensitiveDict(headers)
    resp.raw = urllib3.HTTPResponse(body=raw, headers=headers, preload_content=False)
    return resp


@pytest.mark.parametrize("per_read", [False, True])
@pytest.mark.parametrize("declared", [True, False])
def test_a_body_up_to_the_limit_is_returned_whole(per_read: bool, declared: bool) -> None:
    body = bytes(range(256)) * 1000  # several chunks
    resp = _response(io.BytesIO(body), str(len(body)) if declared else None)
    assert read_limited(resp, len(body), between_reads=(lambda: None) if per_read else None) == body


def test_a_declared_length_over_the_limit_is_refused_before_reading() -> None:
    raw = io.BytesIO(b"x" * 101)
    resp = _response(raw, "101")
    with pytest.raises(ResponseTooLarge):
        read_limited(resp, 100)
    assert raw.tell() == 0


@pytest.mark.parametrize("per_read", [False, True])
@pytest.mark.parametrize("content_length", [None, "²"])  # absent, not a number
def test_a_body_growing_past_the_limit_is_refused(per_read: bool, content_length: str | None) -> None:
    raw = io.BytesIO(b"x" * (5 * CHUNK_BYTES))
    resp = _response(raw, content_length)
    with pytest.raises(ResponseTooLarge):
        read_limited(resp, CHUNK_BYTES + 1, between_reads=(lambda: None) if per_read else None)
    assert raw.tell() < 5 * CHUNK_BYTES, "stopped before the end of the body"


def test_between_reads_runs_before_each_chunk_and_can_stop_the_read() -> None:
    calls = 0

    def deadline() -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise TimeoutError("deadline")

    raw = io.BytesIO(b"x" * (10 * CHUNK_BYTES))
    resp = _response(raw, None)
    with pytest.raises(TimeoutError):
        read_limited(resp, 100 * CHUNK_BYTES, between_reads=deadline)
    assert calls == 3
    assert raw.tell() < 10 * CHUNK_BYTES


def test_a_jwks_larger_than_allowed_is_refused() -> None:
    with FhirTestServer() as server:
        server.serve_json("/jwks.json", {"keys": [], "padding": "x" * MAX_JWKS_BYTES})
        with pytest.raises(JwksError, match="larger than allowed"):
            fetch_jwks(server.url("/jwks.json"))
        server.serve_json("/small.json", {"keys": []})
        assert fetch_jwks(server.url("/small.json")) == {}


def _cut_short_server(stall: bool) -> tuple[str, threading.Thread]:
    """One connection: headers promising 1,000 bytes, 10 of them, then a close (or silence)."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = listener.accept()
        with conn, listener:
            conn.recv(65536)
            conn.sendall(
                b'HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json\r\nContent-Length: 1000\r\n\r\n{"resource'
            )
            if stall:
                time.sleep(3)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return f"http://127.0.0.1:{listener.getsockname()[1]}/fhir", thread


@pytest.mark.parametrize("stall", [False, True], ids=["closed-mid-body", "silent-mid-body"])
def test_a_fhir_body_cut_short_is_a_fetch_error_not_a_crash(stall: bool) -> None:
    base, thread = _cut_short_server(stall)
    limits = FetchLimits(1.0, 1.0, 5, 1_000_000, allowlist=FhirServerAllowlist.parse("127.0.0.1"))
    with pytest.raises(FetchError, match="unreachable or too slow"):
        FhirClient(base, None, limits).read("Patient/1")
    thread.join(5)
