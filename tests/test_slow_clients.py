"""Slow clients cannot starve the workers of ``spinecds serve`` (the default path, no proxy in front).

200 connections each send half a request head and wait; meanwhile health probes and a service call
answer within their usual latency. Then a burst of 1,000 keep-alive requests all get answers.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from conftest import load_json
from support.cases import CASES_DIR, build_request
from support.gunicorn import SpinecdsServer

SLOW_CONNECTIONS = 200
BURST = 1000


@pytest.fixture(scope="module")
def server() -> Iterator[SpinecdsServer]:
    with SpinecdsServer(workers=2, threads=4) as srv:
        yield srv


@pytest.fixture(scope="module")
def call() -> tuple[str, dict[str, Any]]:
    return build_request(load_json(CASES_DIR / "va-22-worked-example-eligible.json"))


def _timed_get(url: str, timeout: float = 10) -> float:
    started = time.monotonic()
    assert requests.get(url, timeout=timeout).status_code == 200
    return time.monotonic() - started


def _timed_call(server: SpinecdsServer, call: tuple[str, dict[str, Any]], timeout: float = 30) -> float:
    started = time.monotonic()
    response = requests.post(server.url(f"/cds-services/{call[0]}"), json=call[1], timeout=timeout)
    assert response.status_code == 200 and response.json()["cards"]
    return time.monotonic() - started


def test_half_sent_request_heads_do_not_starve_probes_or_calls(
    server: SpinecdsServer, call: tuple[str, dict[str, Any]]
) -> None:
    probe_usual = max(_timed_get(server.url("/health/live")) for _ in range(10))
    call_usual = max(_timed_call(server, call) for _ in range(3))
    slow: list[socket.socket] = []
    try:
        for _ in range(SLOW_CONNECTIONS):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            sock.sendall(b"POST /cds-services/spine-metastasis-review HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Ty")
            slow.append(sock)
        time.sleep(0.5)  # the server has met every one of them
        probes = [_timed_get(server.url("/health/live"), timeout=5) for _ in range(10)]
        ready = _timed_get(server.url("/health/ready"), timeout=5)
        calls = [_timed_call(server, call, timeout=15) for _ in range(3)]
    finally:
        for sock in slow:
            sock.close()
    assert max(probes) < 3 * probe_usual + 0.5, (probe_usual, probes)
    assert ready < 3 * probe_usual + 0.5, ready
    assert max(calls) < 3 * call_usual + 1.0, (call_usual, calls)


def test_a_burst_of_1000_keep_alive_requests_all_get_answers(server: SpinecdsServer) -> None:
    def client(n: int) -> list[int]:
        with requests.Session() as session:
            return [session.get(server.url("/health/live"), timeout=15).status_code for _ in range(n)]

    started = time.monotonic()
    with ThreadPoolExecutor(20) as pool:
        statuses = [s for batch in pool.map(client, [BURST // 20] * 20) for s in batch]
    assert len(statuses) == BURST and set(statuses) == {200}
    assert time.monotonic() - started < 60


def test_a_request_dripped_past_the_read_timeout_is_cut_off_and_a_steady_one_is_not() -> None:
    with SpinecdsServer({"SPINECDS_REQUEST_READ_TIMEOUT": "2"}, workers=1, threads=2) as server:
        head = b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"a" * 40

        def drip(seconds_per_byte: float) -> tuple[bytes, float]:
            started = time.monotonic()
            with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
                try:
                    for byte in head:
                        sock.sendall(bytes([byte]))
                        time.sleep(seconds_per_byte)
                        if time.monotonic() - started > 15:
                            break
                    sock.sendall(b"\r\n\r\n")
                    return sock.recv(65536), time.monotonic() - started
                except OSError:  # reset by the server: cut off
                    return b"", time.monotonic() - started

        answer, seconds = drip(0.25)  # ~23 s for the whole head: past the 2 s read timeout
        assert not answer.startswith(b"HTTP/1.1 200"), answer[:100]
        assert seconds < 8, f"cut off only after {seconds:.1f}s"
        answer, _ = drip(0.01)  # under a second: answered
        assert answer.startswith(b"HTTP/1.1 200"), answer[:100]
