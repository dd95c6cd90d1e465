"""A worker's memory stays bounded under the attacks of issue 15 (real gunicorn, one worker).

* A FHIR server answering every search with pages of 19 MB (each inside the per-response limit),
  each linking to one more page, 20 pages a key: the call stops at SPINECDS_FHIR_MAX_TOTAL_BYTES
  (412), it does not read 20 × 19 MB per key.
* An 11 MiB POST to the console's try-it API naming ~250,000 patients: refused (413) before a
  request per patient is built.

The bound is on the worker's peak resident memory (``VmHWM``) above its peak after a normal call.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import requests
from conftest import load_json
from support.cases import CASES_DIR, build_request
from support.fhir_server import fhir_server_request
from support.gunicorn import SpinecdsServer
from support.hostile_http import ScriptedServer, json_answer

PAGE_BYTES = 19_000_000
PAGES = 20
MAX_TOTAL_BYTES = 40_000_000  # the default of SPINECDS_FHIR_MAX_TOTAL_BYTES
RSS_BOUND_MB = 400  # peak growth allowed for one worker under these attacks (the pod limit is 1 GiB)
ENTRY = (
    b'{"resource":{"resourceType":"Observation","id":"o","status":"final",'
    b'"code":{"coding":[{"system":"http://loinc.org","code":"8480-6"}]},"subject":{"reference":"Patient/p1"}}},'
)


def _page(origin: str, n: int) -> bytes:
    link = f'{{"relation":"next","url":"{origin}/fhir/Observation?page={n + 1}"}}'.encode() if n < PAGES else b""
    head = b'{"resourceType":"Bundle","type":"searchset","link":[' + link + b'],"entry":['
    count = (PAGE_BYTES - len(head)) // len(ENTRY)
    return head + ENTRY * (count - 1) + ENTRY[:-1] + b"]}"


@pytest.fixture(scope="module")
def hostile_fhir() -> Iterator[ScriptedServer]:
    server = ScriptedServer({})
    pages = {n: _page(server.origin, n) for n in (1, 2)}  # page 2 stands for every later page

    def page_body(handler: object) -> None:
        path = getattr(handler, "path", "")
        n = int(path.rsplit("page=", 1)[1]) if "page=" in path else 1
        json_answer(pages[min(n, 2)])(handler)  # type: ignore[arg-type]

    server.scripts["/fhir/Patient/p1"] = json_answer(b'{"resourceType":"Patient","id":"p1","gender":"female"}')
    server.scripts["/fhir/*"] = page_body
    with server:
        yield server


def _worker_pid(server: SpinecdsServer) -> int:
    assert server.process is not None
    workers = psutil.Process(server.process.pid).children()
    assert workers, "no gunicorn worker found"
    return int(workers[0].pid)


def _peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


@pytest.fixture(scope="module")
def server(hostile_fhir: ScriptedServer) -> Iterator[SpinecdsServer]:
    env = {"SPINECDS_FHIR_SERVER_ALLOWLIST": hostile_fhir.host, "SPINECDS_CONSOLE": "enabled"}
    with SpinecdsServer(env, workers=1, threads=4) as srv:
        service, call = build_request(load_json(CASES_DIR / "va-22-worked-example-eligible.json"))
        assert requests.post(srv.url(f"/cds-services/{service}"), json=call, timeout=60).status_code == 200
        yield srv


def test_twenty_pages_of_19_mb_stop_at_the_total_limit(server: SpinecdsServer, hostile_fhir: ScriptedServer) -> None:
    pid = _worker_pid(server)
    before = _peak_mb(pid)
    hostile_fhir.hits.clear()
    body = fhir_server_request(f"{hostile_fhir.origin}/fhir", "fhir-token", patient_id="p1")
    started = time.monotonic()
    response = requests.post(server.url("/cds-services/spine-metastasis-review"), json=body, timeout=120)
    seconds = time.monotonic() - started
    assert response.status_code == 412, response.text[:300]
    assert "total" in response.text, response.text[:600]
    pages = [hit for hit in hostile_fhir.hits if "/fhir/" in hit and "Patient/p1" not in hit]
    # what the total allows, plus the pages the keys fetched in parallel (4) had begun when it ran out
    assert len(pages) <= MAX_TOTAL_BYTES // PAGE_BYTES + 1 + 4, f"{len(pages)} pages requested"
    growth = _peak_mb(pid) - before
    print(f"FHIR attack: {len(pages)} pages, {seconds:.1f}s, worker peak +{growth:.0f} MB (from {before:.0f} MB)")
    assert growth < RSS_BOUND_MB, f"worker peak grew {growth:.0f} MB"
    assert seconds < 60


def test_an_11_mib_console_post_naming_many_patients_is_refused_boundedly(server: SpinecdsServer) -> None:
    pid = _worker_pid(server)
    before = _peak_mb(pid)
    patient = b'{"resource":{"resourceType":"Patient","id":"p"}},'
    count = 11 * 1024 * 1024 // len(patient)
    data = (
        b'{"data":{"resourceType":"Bundle","type":"collection","entry":['
        + patient * (count - 1)
        + patient[:-1]
        + b"]}}"
    )
    started = time.monotonic()
    response = requests.post(
        server.url("/console/api/requests"), data=data, headers={"Content-Type": "application/json"}, timeout=120
    )
    seconds = time.monotonic() - started
    assert response.status_code == 413, response.text[:300]
    assert len(response.content) < 10_000
    growth = _peak_mb(pid) - before
    print(f"console attack: {len(data) / 2**20:.1f} MiB, {seconds:.1f}s, worker peak +{growth:.0f} MB")
    assert growth < RSS_BOUND_MB, f"worker peak grew {growth:.0f} MB"
