"""A private PostgreSQL cluster for one test: its own data directory and port, stoppable at will.

Tests that stop the database must never touch the shared cluster on 5432 (other suites use it at
the same time). ``PrivateCluster`` runs Debian's ``initdb``/``pg_ctl`` as the ``postgres`` user
(initdb refuses root) in a fresh temp directory on a free loopback port, trust auth on loopback.

    with private_cluster() as pg:      # skips (or fails under SPINECDS_REQUIRE_PG=1) if impossible
        engine = create_engine(pg.url)
        pg.stop(); pg.start()
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def unavailable_reason() -> str | None:
    """Why a private cluster cannot be started here, or None."""
    if os.geteuid() != 0:
        return "private PostgreSQL cluster needs root (to run initdb/pg_ctl as the postgres user)"
    if _bin_dir() is None:
        return "no /usr/lib/postgresql/*/bin/initdb (install Debian's postgresql)"
    if shutil.which("runuser") is None:
        return "runuser not found"
    try:
        import pwd

        pwd.getpwnam("postgres")
    except KeyError:
        return "no postgres system user"
    return None


class PrivateCluster:
    """One throwaway cluster: ``init()`` once, then ``start()``/``stop()`` as often as the test likes."""

    def __init__(self) -> None:
        bin_dir = _bin_dir()
        assert bin_dir is not None
        self.bin = bin_dir
        self.port = _free_port()
        self.root = Path(tempfile.mkdtemp(prefix="spinecds-private-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        shutil.chown(self.root, "postgres", "postgres")
        self.url = f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, timeout: float = 120) -> None:
        cmd = ["runuser", "-u", "postgres", "--", *args]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=self.root)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed ({result.returncode}): {result.stderr[-2000:]}")

    def init(self) -> PrivateCluster:
        self._run(
            str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"
        )
        return self

    def start(self, extra_options: str = "") -> None:
        """Start (again); ``extra_options`` are more ``-c name=value`` server settings (e.g. TLS)."""
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=on {extra_options}".strip()
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def processes(self) -> list[int]:
        """The postmaster and every process it forked (backends, checkpointer, walwriter ...)."""
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        return [postmaster, *(child.pid for child in psutil.Process(postmaster).children())]

    def freeze(self) -> list[int]:
        """SIGSTOP the whole cluster: it is not down (connections open, the port accepts), it just never answers."""
        pids = self.processes()
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        return pids

    def thaw(self, pids: list[int]) -> None:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    def running(self) -> bool:
        cmd = ["runuser", "-u", "postgres", "--", str(self.bin / "pg_ctl"), "-D", str(self.data), "status"]
        return subprocess.run(cmd, capture_output=True, timeout=30).returncode == 0

    def destroy(self) -> None:
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(OSError, ValueError):
                self.thaw(self.processes())  # a test that failed while the cluster was frozen
        try:
            if self.data.exists() and self.running():
                self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


@contextmanager
def private_cluster() -> Iterator[PrivateCluster]:
    """A started private cluster; skip when impossible here, fail instead when SPINECDS_REQUIRE_PG=1."""
    reason = unavailable_reason()
    if reason:
        if os.environ.get("SPINECDS_REQUIRE_PG") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    cluster = PrivateCluster()
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()
