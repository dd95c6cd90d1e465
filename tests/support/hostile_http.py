"""A loopback HTTP server whose answers a test scripts byte by byte: deep JSON, huge pages, a drip.

``ScriptedServer`` maps a path to a function ``(handler) -> None`` that writes the whole answer
(status line, headers, body) however slowly or oddly the test wants. Standard library only::

    with ScriptedServer({"/jwks.json": drip(b'{"keys": []}', 1.0)}) as srv:
        srv.url("/jwks.json")
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

Script = Callable[[BaseHTTPRequestHandler], None]


def json_answer(body: bytes | Callable[[], bytes], content_type: str = "application/fhir+json") -> Script:
    def answer(handler: BaseHTTPRequestHandler) -> None:
        data = body() if callable(body) else body
        handler.send_response(200)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    return answer


def streamed_answer(chunks: Callable[[], Iterator[bytes]], content_type: str = "application/fhir+json") -> Script:
    """A chunked answer without Content-Length, written as the iterator yields."""

    def answer(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        try:
            for chunk in chunks():
                handler.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            handler.wfile.write(b"0\r\n\r\n")
        except OSError:  # the client gave up: that is the point of most of these tests
            pass

    return answer


def drip(body: bytes, seconds_per_byte: float) -> Script:
    """Headers at once (with Content-Length), then the body one byte per ``seconds_per_byte``."""

    def answer(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        try:
            for i in range(len(body)):
                handler.wfile.write(body[i : i + 1])
                handler.wfile.flush()
                time.sleep(seconds_per_byte)
        except OSError:
            pass

    return answer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        self.server.owner.hits.append(self.path)
        script = self.server.owner.scripts.get(path)
        if script is None:
            for prefix, candidate in self.server.owner.scripts.items():
                if prefix.endswith("*") and path.startswith(prefix[:-1]):
                    script = candidate
                    break
        if script is None:
            self.send_error(404)
            return
        script(self)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: ScriptedServer


class ScriptedServer:
    """Serves ``scripts`` (path, or prefix ending in ``*`` -> script) on ``127.0.0.1:<free port>``."""

    def __init__(self, scripts: dict[str, Script]) -> None:
        self.scripts = dict(scripts)
        self.hits: list[str] = []
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self._httpd.server_address[1]}"

    def url(self, path: str) -> str:
        return self.origin + path

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
