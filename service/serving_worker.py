"""The gunicorn worker of ``spinecds serve``: waitress inside each forked worker, so slow clients cost a
socket, never a thread.

gunicorn's ``gthread`` worker hands each new connection to a pool thread that then blocks reading
the request head: sixteen connections sending half a head stopped every call, health probes
included. Here the worker's main thread runs waitress's event loop, which reads request heads and
bodies from every connection without blocking (bodies above 512 KiB are spooled to a temporary
file, not held in memory) and hands the application threads only complete requests. gunicorn
stays the process manager: the master binds the port, builds the app once (``preload_app``),
forks the workers, restarts a dead one, and on SIGTERM each worker stops accepting and lets its
in-flight requests finish (up to ``graceful_timeout``) before it exits.

Bounds per worker (docs/security.md): ``CONNECTION_LIMIT`` open connections (then new ones wait
in the listen backlog), ``SPINECDS_REQUEST_READ_TIMEOUT`` (30 s) to receive a whole request once it
has begun (head and body: a client dripping bytes is cut off), ``IDLE_TIMEOUT_SECONDS`` for a
keep-alive connection without a request, ``MAX_HEADER_BYTES`` of request head.

All workers accept from the master's one listening socket; ``service/serving_balance.py`` spreads
the connections over them (a worker with more open connections than a peer leaves a new one to that
peer for up to 50 ms), so a client's burst of keep-alive connections no longer lands on one worker.
"""

from __future__ import annotations

import os
import time
from typing import Any

from gunicorn.workers.base import Worker
from waitress import wasyncore
from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.server import TcpWSGIServer
from waitress.task import ThreadedTaskDispatcher, WSGITask

from service.serving_balance import AcceptPolicy, PeerLoads

CONNECTION_LIMIT = 1000
DEFAULT_READ_TIMEOUT_SECONDS = 30.0  # when the app carries no spinecds settings (bench apps)
IDLE_TIMEOUT_SECONDS = 15
MAX_HEADER_BYTES = 64 * 1024
LOOP_SECONDS = 1.0  # the event loop wakes at least this often (gunicorn heartbeat, shutdown)
# the workers' open-connection counts: mapped when gunicorn's master imports this worker class, before it forks
PEER_LOADS = PeerLoads()


class _Task(WSGITask):  # type: ignore[misc]
    """An answer that closes its connection when this worker holds too many (``serving_balance``)."""

    def build_response_header(self) -> bytes:
        server = self.channel.server
        alone = len(self.channel.requests) <= 1  # never behind a pipelined request already received
        if alone and server.policy is not None and server.policy.shed_now(server.open_connections, time.monotonic()):
            self.set_close_on_finish()  # "Connection: close"; the client reconnects, to a less loaded worker
        header: bytes = super().build_response_header()
        return header


class _Channel(HTTPChannel):  # type: ignore[misc]
    """A connection that remembers when its current request began arriving."""

    task_class = _Task

    request_started = 0.0

    def received(self, data: bytes) -> bool:
        if self.request is None:
            self.request_started = time.time()
        result: bool = super().received(data)
        return result


class _Server(TcpWSGIServer):  # type: ignore[misc]
    channel_class = _Channel
    read_timeout = DEFAULT_READ_TIMEOUT_SECONDS
    policy: AcceptPolicy | None = None  # spreads connections over the workers (service/serving_balance.py)
    open_connections = 0  # of this worker, all listeners (set by the worker's loop)

    def readable(self) -> bool:
        if not super().readable():  # also closes idle channels (maintenance) and applies the connection limit
            return False
        return self.policy is None or self.policy.poll_listener(self.open_connections, time.monotonic())

    def handle_accept(self) -> None:
        if self.policy is None or self.policy.accept_now(self.open_connections, time.monotonic()):
            super().handle_accept()

    def maintenance(self, now: float) -> None:
        super().maintenance(now)  # idle keep-alive connections (channel_timeout)
        for channel in list(self.active_channels.values()):
            if channel.request is not None and now - channel.request_started > self.read_timeout:
                channel.will_close = True  # a request still arriving after the read timeout: cut off


class BufferingWorker(Worker):  # type: ignore[misc]
    """gunicorn worker class ``service.serving_worker.BufferingWorker``."""

    def run(self) -> None:
        app_limit = getattr(self.wsgi, "config", {}).get("MAX_CONTENT_LENGTH") or 0
        adj = Adjustments(
            threads=self.cfg.threads,
            connection_limit=CONNECTION_LIMIT,
            channel_timeout=IDLE_TIMEOUT_SECONDS,
            cleanup_interval=1,  # how often timeouts are checked
            max_request_header_size=MAX_HEADER_BYTES,
            # the app answers an oversized body with its own OperationOutcome (413); waitress stops
            # reading only far beyond that
            max_request_body_size=max(2 * int(app_limit), 1 << 20) + (1 << 20),
            asyncore_use_poll=True,
            ident="spinecds",
            # as gunicorn's defaults did: a TLS front on the same host may say the scheme was https
            trusted_proxy="127.0.0.1",
            trusted_proxy_headers={"x-forwarded-proto"},
            clear_untrusted_proxy_headers=True,
            expose_tracebacks=False,
            log_socket_errors=False,
        )
        state = getattr(self.wsgi, "extensions", {}).get("spinecds")
        read_timeout = state.settings.request_read_timeout if state is not None else DEFAULT_READ_TIMEOUT_SECONDS
        channels: dict[int, Any] = {}
        dispatcher = ThreadedTaskDispatcher()
        dispatcher.set_thread_count(adj.threads)
        servers = [
            _Server(
                self.wsgi,
                channels,
                True,
                listener.sock,
                dispatcher=dispatcher,
                adj=adj,
                bind_socket=False,
                sockinfo=(listener.sock.family, listener.sock.type, listener.sock.proto, listener.sock.getsockname()),
            )
            for listener in self.sockets
        ]
        slot = PEER_LOADS.claim(self.age, self.pid)
        for server in servers:
            server.read_timeout = read_timeout
            server.policy = AcceptPolicy(PEER_LOADS, slot)
        listening = len(channels)  # the listeners and their wake-up pipes; the rest are client connections
        parent = os.getppid()
        try:
            while self.alive:
                self.notify()
                connections = len(channels) - listening
                PEER_LOADS.publish(slot, self.pid, connections)
                now = time.monotonic()
                timeout = LOOP_SECONDS
                for server in servers:
                    server.open_connections = connections
                    wake = server.policy.wake_in(now) if server.policy is not None else None
                    timeout = min(timeout, wake) if wake is not None else timeout
                wasyncore.loop(timeout=timeout, map=channels, use_poll=True, count=1)
                if os.getppid() != parent:
                    self.log.info("Parent changed, shutting down: %s", self)
                    break
        finally:
            PEER_LOADS.release(slot)
        self._drain(servers, channels, dispatcher)

    def _drain(self, servers: list[_Server], channels: dict[int, Any], dispatcher: ThreadedTaskDispatcher) -> None:
        """Stop accepting; let requests in progress finish and their answers go out; then exit."""
        for server in servers:
            server.accepting = False
            server.del_channel()
            server.socket.close()
        deadline = time.monotonic() + self.cfg.graceful_timeout
        while time.monotonic() < deadline:
            busy = [c for c in channels.values() if isinstance(c, HTTPChannel) and (c.requests or c.total_outbufs_len)]
            if not busy:
                break
            self.notify()
            wasyncore.loop(timeout=0.1, map=channels, use_poll=True, count=1)
        dispatcher.shutdown(timeout=1)
        wasyncore.close_all(channels)
