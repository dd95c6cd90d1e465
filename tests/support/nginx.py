"""Debian's nginx as a real reverse proxy for tests: config generated into a temp dir, run in the
foreground (``daemon off``) with ``-p`` as its prefix, round-robin over the given upstreams.

Every response carries ``X-Upstream`` (the instance that answered) so tests can see the balancing.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import requests

from support.gunicorn import free_port
from support.tools import require_executable

CONFIG = """\
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    client_max_body_size 25m;
    client_body_buffer_size 25m;
    upstream spinecds {{
{servers}
        keepalive 8;
    }}
    map $http_x_request_id $spinecds_request_id {{ default $http_x_request_id; "" $request_id; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://spinecds;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host:$server_port;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Request-Id $spinecds_request_id;
            proxy_read_timeout 60s;
            add_header X-Upstream $upstream_addr always;
        }}
    }}
}}
"""


def nginx_binary() -> str:
    return require_executable("nginx", "nginx")


class NginxProxy:
    def __init__(self, upstreams: Sequence[str], port: int | None = None) -> None:
        self.port = port or free_port()
        self.prefix = Path(tempfile.mkdtemp(prefix="spinecds-nginx-"))
        (self.prefix / "tmp").mkdir()
        self.prefix.chmod(0o755)
        (self.prefix / "tmp").chmod(0o777)  # workers run as an unprivileged user when started as root
        servers = "\n".join(f"        server {u} max_fails=0;" for u in upstreams)
        self.config = self.prefix / "nginx.conf"
        self.config.write_text(CONFIG.format(prefix=self.prefix, servers=servers, port=self.port), encoding="utf-8")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def start(self, timeout: float = 20.0) -> NginxProxy:
        binary = nginx_binary()
        check = subprocess.run(
            [binary, "-t", "-p", str(self.prefix), "-c", str(self.config), "-e", "stderr"],
            capture_output=True,
            text=True,
        )
        if check.returncode != 0:
            raise RuntimeError(f"nginx config rejected:\n{check.stderr}")
        self.process = subprocess.Popen(
            [binary, "-p", str(self.prefix), "-c", str(self.config), "-e", str(self.prefix / "error.log")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx exited {self.process.returncode}: {self.error_log()[-2000:]}")
            try:
                requests.get(self.url("/health/live"), timeout=1)
                return self
            except requests.RequestException:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"nginx did not start: {self.error_log()[-2000:]}")

    def error_log(self) -> str:
        path = self.prefix / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)  # graceful
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        shutil.rmtree(self.prefix, ignore_errors=True)

    def __enter__(self) -> NginxProxy:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
