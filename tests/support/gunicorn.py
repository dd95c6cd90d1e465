"""``spinecds serve`` as a real subprocess (gunicorn): start on a free port, wait for /health/ready, stop.

Example::

    with SpinecdsServer({"SPINECDS_DATABASE_URL": url}, workers=2) as server:
        requests.get(server.url("/health/ready"))
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

import requests

ROOT = Path(__file__).resolve().parents[2]
SPINECDS = ROOT / ".venv" / "bin" / "spinecds"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spinecds_command() -> list[str]:
    """The installed console script (as in the image), else the module."""
    return [str(SPINECDS)] if SPINECDS.exists() else [sys.executable, "-m", "service.cli"]


class SpinecdsServer:
    """One ``spinecds serve`` process tree. ``env`` adds to (and overrides) a minimal environment.

    Like a user's shell, the environment has no PROMETHEUS_MULTIPROC_DIR: ``spinecds serve`` chooses one.
    ``command`` replaces the console script (e.g. ``scripts/serve``); ``argv`` follows it."""

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        *,
        workers: int = 1,
        threads: int = 4,
        argv: Sequence[str] | None = None,
        port: int | None = None,
        cwd: str | Path | None = None,
        inherit_env: bool = True,
        command: Sequence[str] | None = None,
        wait_for: str = "/health/ready",
    ) -> None:
        self.wait_for = wait_for  # start() returns once this path answers 200
        self.port = port or free_port()
        self.workdir = Path(tempfile.mkdtemp(prefix="spinecds-serve-"))
        base = dict(os.environ) if inherit_env else {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        base = {k: v for k, v in base.items() if not k.startswith("SPINECDS_") and k != "PROMETHEUS_MULTIPROC_DIR"}
        self.env = {
            **base,
            "SPINECDS_DATABASE_URL": f"sqlite:///{self.workdir / 'spinecds.db'}",
            **(env or {}),
        }
        self.argv = (
            list(argv)
            if argv is not None
            else [
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                str(workers),
                "--threads",
                str(threads),
            ]
        )
        self.command = list(command) if command is not None else spinecds_command()
        self.cwd = str(cwd or self.workdir)
        self.log_path = self.workdir / "server.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.startup_seconds: float | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def start(self, timeout: float = 90.0) -> SpinecdsServer:
        started = time.monotonic()
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [*self.command, *self.argv],
            env=self.env,
            cwd=self.cwd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = started + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"spinecds serve exited with {self.process.returncode}:\n{self.output()[-4000:]}")
            try:
                if requests.get(self.url(self.wait_for), timeout=1).status_code == 200:
                    self.startup_seconds = time.monotonic() - started
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"spinecds serve not ready within {timeout}s:\n{self.output()[-4000:]}")

    def output(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM to the gunicorn master (graceful shutdown); returns its exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.terminate(timeout=30)
        if getattr(self, "_log", None) is not None:
            self._log.close()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> SpinecdsServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
