"""Start, probe, measure and stop the servers under test (each one its own process group)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import requests

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
SPINECDS = str(Path(PYTHON).parent / "spinecds")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Server:
    kind: str  # ours | floor | naive
    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    started: float
    ready_after: float | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _workers(self) -> list[psutil.Process]:
        """Children of the gunicorn master (the Popen pid: both launchers re-exec in place)."""
        try:
            return sorted(psutil.Process(self.proc.pid).children(), key=lambda p: p.pid)
        except psutil.NoSuchProcess:
            return []

    def worker_pids(self) -> list[int]:
        return [worker.pid for worker in self._workers()]

    def worker_cpu_seconds(self) -> dict[int, float]:
        """CPU time (user + system, seconds) each worker has used so far."""
        out = {}
        for worker in self._workers():
            with contextlib.suppress(psutil.NoSuchProcess):
                times = worker.cpu_times()
                out[worker.pid] = times.user + times.system
        return out

    def worker_rss_kib(self) -> dict[int, int]:
        out = {}
        for worker in self._workers():
            with contextlib.suppress(psutil.NoSuchProcess):
                out[worker.pid] = worker.memory_info().rss // 1024
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def start(
    kind: str,
    workdir: Path,
    workers: int,
    threads: int,
    database_url: str | None = None,
    probe: bytes | None = None,
    probe_path: str = "/health/ready",
    timeout: float = 60.0,
) -> Server:
    """Start ``kind`` on a free port and wait for the first 200 (``probe`` is POSTed when given)."""
    port = free_port()
    log = workdir / f"{kind}-{port}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPINECDS_")}
    env["PYTHONPATH"] = str(ROOT)
    if kind == "ours":
        env["SPINECDS_DATABASE_URL"] = database_url or f"sqlite:///{workdir / f'ours-{port}.db'}"
        env["SPINECDS_LOG_LEVEL"] = "WARNING"
        cmd = [SPINECDS, "serve", "--port", str(port), "--workers", str(workers), "--threads", str(threads)]
    else:
        cmd = [
            PYTHON,
            "-m",
            "bench.serve",
            kind,
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--threads",
            str(threads),
        ]
    with log.open("wb") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    server = Server(kind, port, proc, log, started)
    try:
        _wait_ready(server, probe, probe_path, started + timeout)
    except BaseException:
        server.stop()
        raise
    return server


def _wait_ready(server: Server, probe: bytes | None, probe_path: str, deadline: float) -> None:
    with requests.Session() as session:
        while time.perf_counter() < deadline:
            if server.proc.poll() is not None:
                tail = server.log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{server.kind} server exited with {server.proc.returncode}:\n{tail}")
            try:
                if probe is None:
                    r = session.get(server.url + probe_path, timeout=30)
                else:
                    headers = {"Content-Type": "application/json"}
                    r = session.post(server.url + probe_path, data=probe, headers=headers, timeout=30)
                if r.status_code == 200:
                    server.ready_after = time.perf_counter() - server.started
                    return
            except requests.RequestException:
                pass
            time.sleep(0.005)
    raise RuntimeError(
        f"{server.kind} server not ready in time; log:\n{server.log.read_text(errors='replace')[-2000:]}"
    )
