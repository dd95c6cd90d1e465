"""Connections are spread over the gunicorn workers (``service/serving_balance.py``).

All workers accept from one listening socket; without a policy a burst of keep-alive connections
landed on whichever worker woke first (100 % / 0 % CPU split in the bench). The policy is checked
deterministically (two workers sharing one table) and on a real ``spinecds serve`` with two workers:
each worker's accepted connections are counted from ``/proc`` (sockets it holds to the server port).
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.gunicorn import SpinecdsServer

from service.serving_balance import (
    RECHECK_SECONDS,
    SHED_INTERVAL_SECONDS,
    STALE_SECONDS,
    AcceptPolicy,
    PeerLoads,
)

HANDOFF = 0.05


def test_a_worker_with_more_connections_leaves_a_new_one_to_its_peer() -> None:
    loads = PeerLoads(slots=4)
    a, b = loads.claim(0, pid=101), loads.claim(1, pid=102)
    assert a != b
    policy = AcceptPolicy(loads, a, handoff=HANDOFF)
    loads.publish(b, 102, 3)
    now = time.monotonic()
    assert policy.poll_listener(3, now) and policy.accept_now(3, now)  # as loaded as the peer: accept
    assert not policy.accept_now(4, now)  # more than the peer: declined, listener muted for the handoff
    assert not policy.poll_listener(4, now + HANDOFF / 2)
    assert policy.wake_in(now + HANDOFF / 2) == pytest.approx(RECHECK_SECONDS)  # looks again soon
    # after the handoff the first poll finds nothing waiting (the peer took it): the next one starts afresh
    assert policy.poll_listener(4, now + HANDOFF) and policy.poll_listener(4, now + HANDOFF + 0.001)
    assert not policy.accept_now(4, now + HANDOFF + 0.002)
    # muted, and the peer accepts until it holds more: this worker listens again at once
    loads.publish(b, 102, 5)
    assert policy.poll_listener(4, now + HANDOFF + 0.003) and policy.accept_now(4, now + HANDOFF + 0.003)


def test_a_connection_no_peer_takes_is_accepted_after_the_handoff() -> None:
    loads = PeerLoads(slots=4)
    a, b = loads.claim(0, pid=101), loads.claim(1, pid=102)
    policy = AcceptPolicy(loads, a, handoff=HANDOFF)
    loads.publish(b, 102, 0)  # a peer that looks idle but never accepts (busy, stopped)
    now = time.monotonic()
    assert not policy.accept_now(9, now)
    assert policy.poll_listener(9, now + HANDOFF)  # still readable at the first poll after the handoff
    assert policy.accept_now(9, now + HANDOFF)  # taken, and so is what else waits during one more period
    assert policy.accept_now(10, now + 1.5 * HANDOFF)
    assert not policy.accept_now(11, now + 2.5 * HANDOFF)


def test_a_worker_with_too_many_connections_closes_one_at_a_time() -> None:
    loads = PeerLoads(slots=4)
    a, b = loads.claim(0, pid=101), loads.claim(1, pid=102)
    policy = AcceptPolicy(loads, a, handoff=HANDOFF)
    loads.publish(b, 102, 3)
    now = time.monotonic()
    assert not policy.shed_now(4, now)  # one more than the peer: keep it
    assert policy.shed_now(5, now)
    assert not policy.shed_now(5, now + SHED_INTERVAL_SECONDS / 2)  # one at a time: the counts catch up first
    assert policy.shed_now(5, now + SHED_INTERVAL_SECONDS)
    loads.release(b)
    assert not policy.shed_now(500, now + 1)  # alone: nowhere to move a connection to


def test_dead_and_released_slots_are_not_peers() -> None:
    loads = PeerLoads(slots=2)
    a, b = loads.claim(0, pid=101), loads.claim(1, pid=102)
    now = time.monotonic()
    assert loads.least_loaded_peer(a, now) == 0
    assert loads.least_loaded_peer(a, now + STALE_SECONDS + 1) is None  # heartbeat too old: a dead worker
    assert loads.claim(0, pid=103) == a  # a worker's own slot again, not a new one
    loads.release(b)
    assert loads.least_loaded_peer(a, now) is None
    assert loads.claim(1, pid=104) == b  # freed slots are reused
    assert AcceptPolicy(PeerLoads(slots=1), 0).accept_now(1000, now)  # a single worker always accepts


def _worker_pids(master: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == master:
                pids.append(int(entry.name))
    return pids


def _connections_per_worker(server: SpinecdsServer) -> dict[int, int]:
    """Established sockets on the server port that each worker holds (from /proc/net/tcp and /proc/<pid>/fd)."""
    assert server.process is not None
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == server.port and fields[3] == "01":
            inodes.add(fields[9])
    counts = {}
    for pid in _worker_pids(server.process.pid):
        held = 0
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in inodes:
                held += 1
        counts[pid] = held
    return counts


def _burst(port: int, n: int) -> list[socket.socket]:
    """``n`` connections opened at once, then one request each (answered: every one was accepted)."""
    socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(n)]
    for sock in socks:
        sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    for sock in socks:
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
    return socks


@pytest.fixture(scope="module")
def server() -> Iterator[SpinecdsServer]:
    with SpinecdsServer(workers=2, threads=4) as srv:
        assert srv.process is not None
        deadline = time.monotonic() + 30
        while len(_worker_pids(srv.process.pid)) < 2 and time.monotonic() < deadline:  # ready = the first worker
            time.sleep(0.05)
        time.sleep(0.5)  # both event loops running
        yield srv


def test_bursts_of_keep_alive_connections_are_spread_over_both_workers(server: SpinecdsServer) -> None:
    for n in (8, 32, 8):
        socks = _burst(server.port, n)
        try:
            counts = _connections_per_worker(server)
        finally:
            for sock in socks:
                sock.close()
        assert len(counts) == 2 and sum(counts.values()) == n, counts
        assert min(counts.values()) >= n // 2 - 1, (n, counts)
        time.sleep(0.3)  # the workers see the connections close


def test_a_stopped_worker_strands_no_connection(server: SpinecdsServer) -> None:
    assert server.process is not None
    stopped = _worker_pids(server.process.pid)[0]
    os.kill(stopped, signal.SIGSTOP)  # alive, its slot fresh for a while, but it accepts nothing
    try:
        socks, waits = [], []
        for _ in range(10):  # one by one: the running worker soon has more connections than the stopped one
            started = time.monotonic()
            socks += _burst(server.port, 1)
            waits.append(time.monotonic() - started)
        for sock in socks:
            sock.close()
    finally:
        os.kill(stopped, signal.SIGCONT)
    # each one is taken after one handoff (50 ms), not when the stopped worker's slot goes stale (3 s)
    assert max(waits) < 1.0, waits


def test_connections_that_landed_on_one_worker_move_to_the_other(server: SpinecdsServer) -> None:
    """As when a worker is still booting while a client opens its pool: keep-alive connections move over."""
    assert server.process is not None
    stopped = _worker_pids(server.process.pid)[0]
    clients = [http.client.HTTPConnection("127.0.0.1", server.port, timeout=10) for _ in range(8)]

    def round_trip() -> None:
        for client in clients:  # http.client reconnects by itself after an answer with "Connection: close"
            client.request("GET", "/health/live")
            response = client.getresponse()
            assert response.status == 200
            response.read()

    os.kill(stopped, signal.SIGSTOP)
    try:
        round_trip()
        assert sorted(_connections_per_worker(server).values()) == [0, 8]
    finally:
        os.kill(stopped, signal.SIGCONT)
    try:
        for _ in range(40):
            round_trip()
            time.sleep(0.02)
        counts = _connections_per_worker(server)
    finally:
        for client in clients:
            client.close()
    assert sum(counts.values()) == 8 and min(counts.values()) >= 3, counts


def test_a_connection_is_never_closed_behind_a_pipelined_request(server: SpinecdsServer) -> None:
    assert server.process is not None
    stopped = _worker_pids(server.process.pid)[0]
    os.kill(stopped, signal.SIGSTOP)  # the other worker holds every connection: it wants to shed some
    idle: list[socket.socket] = []
    try:
        idle = _burst(server.port, 3)
        time.sleep(2 * SHED_INTERVAL_SECONDS)
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" * 2)  # two requests at once
            answers = b""
            while answers.count(b"HTTP/1.1 200") < 2:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answers += chunk
    finally:
        os.kill(stopped, signal.SIGCONT)
        for sock in idle:
            sock.close()
    assert answers.count(b"HTTP/1.1 200") == 2, answers
