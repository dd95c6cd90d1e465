"""Start, probe, measure and stop the servers under test (each one its own process group)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

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

    def worker_pids(self) -> list[int]:
        """Children of the gunicorn master (the Popen pid: both launchers re-exec in place)."""
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == self.proc.pid:
                pids.append(int(entry.name))
        return sorted(pids)

    def worker_cpu_ticks(self) -> dict[int, int]:
        """CPU time (user + system, clock ticks) each worker has used so far."""
        out = {}
        for pid in self.worker_pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            out[pid] = int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15 of stat)
        return out

    def worker_rss_kib(self) -> dict[int, int]:
        out = {}
        for pid in self.worker_pids():
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("VmRSS:"):
                    out[pid] = int(line.split()[1])
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
