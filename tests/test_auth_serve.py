"""The real server (`spinecds serve`, gunicorn, two worker processes) with SPINECDS_AUTH=required:
sandbox tokens pass, a replay is refused whichever worker gets it (the replay store is the shared
database), and the development mode warns loudly at start."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml
from conftest import ROOT
from support.jwt_tools import FIXTURES, SANDBOX_ISS, Client

from service.db import init_db, make_engine


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    full = {**os.environ, **env, "SPINECDS_LOG_LEVEL": "WARNING"}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "serve", "--host", "127.0.0.1", "--port", str(port), "--workers=2"],
            cwd=ROOT,
            env=full,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/health/live", timeout=1).status_code == 200:
                return proc
        except requests.RequestException:
            time.sleep(0.2)
    _stop(proc)
    raise AssertionError(f"server did not start: {log.read_text(errors='replace')[-2000:]}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    tmp = tmp_path_factory.mktemp("serve")
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    issuers = tmp / "issuers.yaml"
    issuers.write_text(
        yaml.safe_dump({"issuers": [{"iss": SANDBOX_ISS, "jwks_file": str(FIXTURES / "sandbox-jwks.json")}]})
    )
    database = f"sqlite:///{tmp / 'serve.db'}"
    init_db(make_engine(database))  # the schema exists before the two workers start
    env = {
        "SPINECDS_AUTH": "required",
        "SPINECDS_ISSUERS_FILE": str(issuers),
        "SPINECDS_DATABASE_URL": database,
        "SPINECDS_PUBLIC_BASE_URL": base,
        "PROMETHEUS_MULTIPROC_DIR": str(tmp / "metrics"),
    }
    log = tmp / "serve.log"
    proc = _start(env, port, log)
    try:
        yield base, log
    finally:
        _stop(proc)


def test_sandbox_token_passes_and_its_replay_fails_on_every_worker(server: tuple[str, Path]) -> None:
    base, log = server
    sandbox = Client.sandbox()
    sandbox.jku = None  # the sandbox's public jku is not reachable from here; its keys are on file
    session = requests.Session()
    for _ in range(4):  # several tokens, so both workers take some
        token = sandbox.mint(f"{base}/cds-services", time.time())
        ok = session.get(f"{base}/cds-services", headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert ok.status_code == 200, ok.text
        for _ in range(3):  # fresh connections: any worker may answer the replay
            replay = requests.get(f"{base}/cds-services", headers={"Authorization": f"Bearer {token}"}, timeout=10)
            assert replay.status_code == 401
            assert replay.json()["issue"][0]["diagnostics"] == "authentication required"
            assert replay.headers["WWW-Authenticate"].startswith("Bearer")
    assert requests.get(f"{base}/cds-services", timeout=10).status_code == 401
    text = log.read_text(errors="replace")
    assert "replay" in text and token not in text
    assert "DISABLED" not in text


def test_development_mode_warns_loudly(tmp_path: Path) -> None:
    port = _free_port()
    env = {"SPINECDS_AUTH": "disabled", "SPINECDS_DATABASE_URL": f"sqlite:///{tmp_path / 'dev.db'}"}
    env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path / "metrics")
    init_db(make_engine(env["SPINECDS_DATABASE_URL"]))
    log = tmp_path / "dev.log"
    proc = _start(env, port, log)
    try:
        assert requests.get(f"http://127.0.0.1:{port}/cds-services", timeout=10).status_code == 200
    finally:
        _stop(proc)
    text = log.read_text(errors="replace")
    assert "authentication is DISABLED" in text
