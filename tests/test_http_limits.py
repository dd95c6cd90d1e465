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
from service.http_limits import CHUNK_BYTES, ResponseTooLarge, outgoing_session, read_limited


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


class _CountingProxy:
    """A loopback "proxy" that only counts what reaches it (and answers 502)."""

    def __init__(self) -> None:
        self.hits = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn:
                self.hits += 1
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")


def test_outgoing_requests_ignore_proxies_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    proxy = _CountingProxy()
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, proxy.url)
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    with FhirTestServer(resources=[{"resourceType": "Patient", "id": "p1"}]) as ehr:
        limits = FetchLimits(1.0, 2.0, 5, 1_000_000, allowlist=FhirServerAllowlist.parse("127.0.0.1"))
        assert FhirClient(ehr.base_url, "secret-token", limits).read("Patient/p1")["id"] == "p1"
        assert proxy.hits == 0, "the token went through the environment's proxy"
        requests.get(ehr.base_url + "/Patient/p1", timeout=5)  # a default session would have used it
    assert proxy.hits == 1
    proxy.listener.close()


def test_outgoing_requests_verify_with_the_hospital_ca_bundle(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/hospital/ca.pem")
    assert outgoing_session().verify == "/etc/hospital/ca.pem"
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    assert outgoing_session().verify is True
