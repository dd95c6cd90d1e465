"""The image, run the way a hospital runs it: podman, read-only root, non-root, all capabilities
dropped, JWTs required, PostgreSQL. Build it first with ``docker/podman/build-image`` (``.ci/run``
does, then sets SPINECDS_REQUIRE_IMAGE=1); without the image the test skips and says how to build it.

Checks: the image's user and HEALTHCHECK (kept by ``--format docker``), ``spinecds migrate`` in the
container, ``/health/ready``, a signed CDS call with cards, ``/metrics``, signed feedback stored in
PostgreSQL, JSON logs without the patient's id, and a graceful stop on SIGTERM (exit 0).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml
from conftest import ROOT, load_json
from sqlalchemy import create_engine, select
from support.cases import CASES_DIR, build_request
from support.gunicorn import free_port
from support.jwt_tools import FIXTURES, SANDBOX_ISS, Client
from support.private_pg import private_cluster
from support.tools import require_executable

from service.db import feedback_items

IMAGE = os.environ.get("SPINECDS_IMAGE", "localhost/spinecds:test")
PODMAN_ENV = {**os.environ, "CONTAINERS_CONF": str(ROOT / "docker" / "podman" / "containers.conf")}
PODMAN_ENV.setdefault("STORAGE_DRIVER", "vfs")
CASE = load_json(CASES_DIR / "va-22-worked-example-eligible.json")
HARDENED = [
    "--read-only",
    "--tmpfs",
    "/tmp:rw,nosuid,size=64m",
    "--cap-drop",
    "ALL",
    "--security-opt",
    "no-new-privileges",
    "--network",
    "host",  # loopback PostgreSQL and the test's client
]


def podman(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_executable("podman", "podman"), *args],
        env=PODMAN_ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def image() -> dict[str, object]:
    require_executable("podman", "podman")
    found = podman("image", "inspect", IMAGE)
    if found.returncode != 0:
        reason = f"image {IMAGE} not built (docker/podman/build-image builds it)"
        if os.environ.get("SPINECDS_REQUIRE_IMAGE") == "1":
            pytest.fail(f"SPINECDS_REQUIRE_IMAGE=1 but {reason}")
        pytest.skip(reason)
    (inspected,) = json.loads(found.stdout)
    return dict(inspected)


@pytest.fixture()
def config_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "config"
    folder.mkdir()
    shutil.copy(FIXTURES / "sandbox-jwks.json", folder / "sandbox-jwks.json")
    entry = {"iss": SANDBOX_ISS, "jwks_file": "sandbox-jwks.json", "jku_allowlist": [Client.sandbox().jku]}
    (folder / "issuers.yaml").write_text(yaml.safe_dump({"issuers": [entry]}))
    for path in (folder, *folder.iterdir()):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return folder


@pytest.fixture()
def container(image: dict[str, object], config_dir: Path) -> Iterator[tuple[str, str, str]]:
    with private_cluster() as pg:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = [
            "-e",
            f"SPINECDS_DATABASE_URL={pg.url}",
            "-e",
            f"SPINECDS_PUBLIC_BASE_URL={base}",
            "-e",
            "SPINECDS_ISSUERS_FILE=/etc/spinecds/issuers.yaml",
            "-v",
            f"{config_dir}:/etc/spinecds:ro",
        ]
        migrate = podman("run", "--rm", *HARDENED, *env, IMAGE, "migrate")
        assert migrate.returncode == 0, migrate.stderr
        name = f"spinecds-test-{uuid.uuid4().hex[:8]}"
        started = podman(
            "run", "-d", "--name", name, *HARDENED, *env, IMAGE, "serve", "--host", "127.0.0.1", "--port", str(port)
        )
        assert started.returncode == 0, started.stderr
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    if requests.get(f"{base}/health/ready", timeout=2).status_code == 200:
                        break
                except requests.RequestException:
                    pass
                time.sleep(0.5)
            else:
                pytest.fail("container not ready:\n" + podman("logs", name).stderr[-3000:])
            yield name, base, pg.url
        finally:
            podman("rm", "-f", "-t", "5", name)


def test_image_runs_hardened_with_auth_postgres_probes_metrics_feedback_and_sigterm(
    image: dict[str, object], container: tuple[str, str, str]
) -> None:
    name, base, database = container
    assert image["User"] == "10001:10001"
    healthcheck = image.get("Healthcheck")
    assert isinstance(healthcheck, dict), "no HEALTHCHECK: the image was built in OCI format (use --format docker)"
    assert healthcheck["Test"][0] == "CMD"
    port = base.rsplit(":", 1)[1]  # host network: the probe's 8080 is this test's port
    probe = [arg.replace("127.0.0.1:8080", f"127.0.0.1:{port}") for arg in healthcheck["Test"][1:]]
    assert podman("exec", name, *probe).returncode == 0, "the HEALTHCHECK command passes"

    sandbox = Client.sandbox()
    service, body = build_request(CASE)
    url = f"{base}/cds-services/{service}"
    assert requests.post(url, json=body, timeout=30).status_code == 401, "JWT required"
    token = sandbox.mint(url, time.time())
    answer = requests.post(url, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=60)
    assert answer.status_code == 200, answer.text
    cards = answer.json()["cards"]
    assert cards
    feedback_url = f"{url}/feedback"
    item = {"card": cards[0]["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-06-01T12:00:00Z"}
    token = sandbox.mint(feedback_url, time.time())
    stored = requests.post(
        feedback_url, json={"feedback": [item]}, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    assert stored.status_code == 200, stored.text
    with create_engine(database).connect() as db:
        outcomes = db.execute(select(feedback_items.c.outcome).where(feedback_items.c.card_uuid == item["card"]))
        assert [row[0] for row in outcomes] == ["overridden"]
    metrics = requests.get(f"{base}/metrics", timeout=10).text
    assert f'spinecds_cds_service_calls_total{{hook="patient-view",result="ok",service="{service}"}}' in metrics

    stop = podman("stop", "-t", "40", name, timeout=90)
    assert stop.returncode == 0, stop.stderr
    state = json.loads(podman("inspect", name).stdout)[0]["State"]
    assert state["ExitCode"] == 0, "graceful shutdown on SIGTERM"
    logs = podman("logs", name)
    lines = [ln for ln in (logs.stdout + logs.stderr).splitlines() if ln.startswith("{")]
    assert lines and all(json.loads(ln)["level"] for ln in lines), "JSON logs"
    patient_id = next(r["id"] for r in CASE["resources"] if r["resourceType"] == "Patient")
    assert all(f'"{patient_id}"' not in ln and f"Patient/{patient_id}" not in ln for ln in lines)
    assert "audit: POST call status=200" in logs.stdout + logs.stderr
