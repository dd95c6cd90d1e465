"""SSRF-safe fhirServer access: only allowlisted hosts, https except loopback, no redirects to other
hosts, bounded size and time; the access token is never logged and never sent anywhere else."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import CASE_NOW, load_json
from flask import Flask
from support.cases import CASES_DIR
from support.fhir_server import FhirTestServer, fhir_server_request

from service.app import create_app
from service.fhir.allowlist import FhirServerAllowlist
from service.fhir.client import FetchError, FetchLimits, FhirClient

CASE = load_json(CASES_DIR / "va-22-worked-example-eligible.json")
TOKEN = "secret-ehr-access-token-0123456789"
SERVICE = "/cds-services/spine-metastasis-review"

ALLOW = FhirServerAllowlist.parse("ehr.example.org, fhir.example.org:8443, 127.0.0.1, [::1], localhost:8080")


@pytest.mark.parametrize(
    "url",
    [
        "https://ehr.example.org/fhir",
        "https://EHR.example.org./fhir",
        "https://ehr.example.org:9443/r4",
        "https://fhir.example.org:8443/fhir",
        "http://127.0.0.1:5000/fhir",
        "http://[::1]:5000/fhir",
        "http://localhost:8080/fhir",
    ],
)
def test_allowed(url: str) -> None:
    assert ALLOW.refusal(url) is None


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://ehr.example.org/fhir", "https"),
        ("https://evil.example.org/fhir", "allowlist"),
        ("https://fhir.example.org/fhir", "allowlist"),  # only :8443 is listed
        ("https://ehr.example.org.evil.org/fhir", "allowlist"),
        ("https://ehr.example.org@evil.org/fhir", "user-info"),
        ("https://user:pw@ehr.example.org/fhir", "user-info"),
        ("https://evil.org\\@ehr.example.org/fhir", "printable ASCII"),
        ("https://evil.org\\.ehr.example.org/fhir", "printable ASCII"),
        ("https://ehr.example.org /fhir", "printable ASCII"),
        ("https://ehr.example.org\t/fhir", "printable ASCII"),
        ("https://ehr.exämple.org/fhir", "printable ASCII"),
        ("http://127.0.0.2/fhir", "allowlist"),
        ("http://2130706433/fhir", "allowlist"),  # 127.0.0.1 as a decimal number
        ("http://0x7f000001/fhir", "allowlist"),
        ("http://169.254.169.254/latest/meta-data", "allowlist"),
        ("http://localhost:9000/fhir", "allowlist"),  # only :8080 is listed
        ("file:///etc/passwd", "http(s)"),
        ("gopher://127.0.0.1:70/", "http(s)"),
        ("https://ehr.example.org:99999/fhir", "parsed"),
        ("https://[::1/fhir", "parsed"),
        ("https:///fhir", "no host"),
        ("https://" + "a" * 3000 + ".org/", "too long"),
    ],
)
def test_refused(url: str, why: str) -> None:
    refusal = ALLOW.refusal(url)
    assert refusal is not None and why in refusal, refusal


def test_empty_allowlist_refuses_everything() -> None:
    empty = FhirServerAllowlist.parse("")
    assert empty.empty
    assert empty.refusal("http://127.0.0.1/fhir") is not None
    assert empty.refusal("https://ehr.example.org/fhir") is not None


# ------------------------------------------------------------------------------------ through the app


@pytest.fixture()
def ehr() -> Iterator[FhirTestServer]:
    with FhirTestServer(resources=CASE["resources"], page_size=2, require_token=TOKEN) as server:
        yield server


def _request(fhir_server: str, prefetch: dict[str, Any] | None = None) -> dict[str, Any]:
    return fhir_server_request(fhir_server, TOKEN, patient_id="worked", prefetch=prefetch)


def _app(tmp_path: Path, allowlist: str) -> Flask:
    return create_app(
        {
            "database_url": f"sqlite:///{tmp_path / 'a.db'}",
            "fhir_server_allowlist": allowlist,
            "fhir_connect_timeout": 1.0,
            "fhir_read_timeout": 2.0,
        },
        clock=lambda: CASE_NOW,
    )


def _reasons(response: Any) -> str:
    return " ".join(i["diagnostics"] for i in response.get_json()["issue"])


def test_allowlisted_loopback_server_is_used(client: Any, ehr: FhirTestServer) -> None:
    response = client.post(SERVICE, json=_request(ehr.base_url))
    assert response.status_code == 200, response.get_json()
    assert ehr.requests and all(r.authorization == f"Bearer {TOKEN}" for r in ehr.requests)


def test_host_not_on_the_allowlist_is_never_called(client: Any, ehr: FhirTestServer) -> None:
    # same server, but named "localhost": not on the session app's list (127.0.0.1 only)
    response = client.post(SERVICE, json=_request(f"http://localhost:{ehr.port}/fhir"))
    assert response.status_code == 412
    assert "allowlist" in _reasons(response)
    assert ehr.requests == []


def test_empty_allowlist_means_prefetch_only(tmp_path: Path, ehr: FhirTestServer, caplog: Any) -> None:
    caplog.set_level(logging.WARNING)
    app = _app(tmp_path, "")
    assert any("FHIR_SERVER_ALLOWLIST is empty" in r.getMessage() for r in caplog.records)
    response = app.test_client().post(SERVICE, json=_request(ehr.base_url))
    assert response.status_code == 412
    assert ehr.requests == []


def test_plain_http_to_a_non_loopback_host_is_refused_without_a_connection(tmp_path: Path) -> None:
    app = _app(tmp_path, "ehr.example.org")
    started = time.monotonic()
    response = app.test_client().post(SERVICE, json=_request("http://ehr.example.org/fhir"))
    assert response.status_code == 412
    assert "https" in _reasons(response)
    assert time.monotonic() - started < 1.0  # refused by the check, not by a network timeout


def test_same_origin_redirect_is_followed(client: Any, ehr: FhirTestServer) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": r} for r in CASE["resources"] if r["resourceType"] == "Condition"],
    }
    ehr.serve_json("/moved/conditions", bundle)
    ehr.redirect_to = ehr.url("/moved/conditions")
    ehr.set_fault("redirect", "Condition")
    response = client.post(SERVICE, json=_request(ehr.base_url))
    assert response.status_code == 200, response.get_json()
    moved = [r for r in ehr.requests if r.path == "/moved/conditions"]
    assert moved and moved[0].authorization == f"Bearer {TOKEN}"


def test_redirect_to_another_host_is_refused_and_gets_no_token(client: Any, ehr: FhirTestServer) -> None:
    with FhirTestServer() as other:
        ehr.redirect_to = other.url("/steal")
        ehr.set_fault("redirect", "Condition")
        response = client.post(SERVICE, json=_request(ehr.base_url))
        assert response.status_code == 412
        assert other.requests == []


def test_next_link_to_another_origin_is_not_followed(client: Any, ehr: FhirTestServer) -> None:
    with FhirTestServer() as other:
        conditions = [r for r in CASE["resources"] if r["resourceType"] == "Condition"]
        paged = {
            "resourceType": "Bundle",
            "type": "searchset",
            "link": [{"relation": "next", "url": other.url("/fhir/Condition?page=2")}],
            "entry": [{"resource": r} for r in conditions],
        }
        response = client.post(SERVICE, json=_request(ehr.base_url, {"conditions": paged}))
        assert response.status_code in {200, 412}
        assert other.requests == []


def test_the_access_token_is_never_logged(client: Any, ehr: FhirTestServer, caplog: Any) -> None:
    caplog.set_level(logging.DEBUG)  # urllib3 and requests included
    ehr.set_fault("500", "AllergyIntolerance")
    ok = client.post(SERVICE, json=_request(ehr.base_url))
    refused = client.post(SERVICE, json=_request(f"http://localhost:{ehr.port}/fhir"))
    assert ok.status_code == 200 and refused.status_code == 412
    assert TOKEN not in refused.get_data(as_text=True)
    for record in caplog.records:
        assert TOKEN not in record.getMessage()
        assert TOKEN not in str(record.__dict__)


class _Trickle:
    """A server that answers 200 and then sends one byte every 0.2 s, forever (slowloris)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json\r\nContent-Length: 100000\r\n\r\n")
            while not self.stop.is_set():
                try:
                    conn.sendall(b" ")
                except OSError:
                    return
                time.sleep(0.2)

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


def test_a_trickling_server_is_cut_off_at_the_total_deadline() -> None:
    trickle = _Trickle()
    try:
        loopback = FhirServerAllowlist.parse("127.0.0.1")
        limits = FetchLimits(1.0, 2.0, 5, 1_000_000, total_timeout=1.5, allowlist=loopback)
        client = FhirClient(f"http://127.0.0.1:{trickle.port}/fhir", TOKEN, limits)
        started = time.monotonic()
        with pytest.raises(FetchError, match="total time"):
            client.read("Patient/worked")
        assert time.monotonic() - started < 3.0  # the read timeout alone would never fire
    finally:
        trickle.close()


def test_client_refuses_a_url_off_the_allowlist_even_when_called_directly(ehr: FhirTestServer) -> None:
    limits = FetchLimits(1.0, 2.0, 5, 1_000_000, allowlist=FhirServerAllowlist.parse("10.0.0.1"))
    with pytest.raises(FetchError, match="allowlist"):
        FhirClient(ehr.base_url, TOKEN, limits).read("Patient/worked")
    assert ehr.requests == []
