"""Two `spinecds serve` instances on one PostgreSQL database (own db, migrated with `spinecds migrate`),
behind Debian nginx (round-robin), with JWT authentication required as in production.

Interleaved service calls and feedback through nginx: every response 200, both instances used,
every feedback item stored exactly once, every issued card recorded once; a JWT replayed through the
other instance is refused (the jti replay store is the shared database).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from conftest import load_json
from sqlalchemy import create_engine, func, select
from support.cases import CASES_DIR, build_request
from support.gunicorn import SpinecdsServer, free_port, spinecds_command
from support.jwt_tools import Client
from support.nginx import NginxProxy, nginx_binary
from support.scratch_db import scratch_postgres
from support.tls import self_signed_certificate

from service.db import feedback_items, issued_cards, used_jtis

ROOT = Path(__file__).resolve().parent.parent
CASE = load_json(CASES_DIR / "va-22-worked-example-eligible.json")
SERVICE = "spine-metastasis-review"


@dataclass
class Cluster:
    url: str
    proxy: NginxProxy
    instances: list[SpinecdsServer]
    ehr: Client

    def token(self, path: str) -> str:
        return self.ehr.mint(self.proxy.base_url + path, time.time())

    def post(self, base: str, path: str, body: dict[str, Any], token: str | None = None) -> requests.Response:
        headers = {"Authorization": f"Bearer {token or self.token(path)}"}
        return requests.post(base + path, json=body, headers=headers, timeout=60)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    nginx_binary()
    tmp = tmp_path_factory.mktemp("scale")
    ehr = Client.generated("https://ehr.scale-out.test")
    (tmp / "jwks.json").write_text(json.dumps(ehr.jwks()))
    (tmp / "issuers.yaml").write_text(yaml.safe_dump({"issuers": [{"iss": ehr.iss, "jwks_file": "jwks.json"}]}))
    with scratch_postgres("spinecds_scale") as url:
        migrate = subprocess.run(
            [*spinecds_command(), "migrate"],
            env={**os.environ, "SPINECDS_DATABASE_URL": url},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert migrate.returncode == 0, migrate.stderr
        port = free_port()
        env = {
            "SPINECDS_DATABASE_URL": url,
            "SPINECDS_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
            "SPINECDS_AUTH": "required",
            "SPINECDS_ISSUERS_FILE": str(tmp / "issuers.yaml"),
        }
        a, b = SpinecdsServer(env, workers=1, threads=4), SpinecdsServer(env, workers=1, threads=4)
        try:
            a.start()
            b.start()
            with NginxProxy([f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"], port=port) as proxy:
                yield Cluster(url, proxy, [a, b], ehr)
        finally:
            a.stop()
            b.stop()


def test_interleaved_calls_and_feedback_stored_exactly_once(cluster: Cluster) -> None:
    service, body = build_request(CASE)

    def call_then_feedback(i: int) -> tuple[str, str, list[str], int]:
        request = {**body, "hookInstance": str(uuid.uuid4())}
        path = f"/cds-services/{service}"
        called = cluster.post(cluster.proxy.base_url, path, request)
        assert called.status_code == 200, called.text
        cards = [c["uuid"] for c in called.json()["cards"]]
        items = [
            {
                "card": card,
                "outcome": "overridden",
                "outcomeTimestamp": "2026-06-01T12:00:00Z",
                "overrideReason": {"userComment": f"round {i}"},
            }
            for card in cards
        ]
        fed = cluster.post(cluster.proxy.base_url, f"{path}/feedback", {"feedback": items})
        assert fed.status_code == 200, fed.text
        assert fed.json() == {"stored": len(items), "alreadyStored": 0}
        return called.headers["X-Upstream"], fed.headers["X-Upstream"], cards, len(items)

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(call_then_feedback, range(24)))
    served_calls = Counter(r[0] for r in results)
    served_feedback = Counter(r[1] for r in results)
    assert len(served_calls) == 2 and len(served_feedback) == 2, (served_calls, served_feedback)
    sent = [card for r in results for card in r[2]]
    assert sent and len(set(sent)) == len(sent), "card uuids are unique across instances"

    engine = create_engine(cluster.url)
    try:
        with engine.connect() as conn:
            stored = Counter(conn.execute(select(feedback_items.c.card_uuid)).scalars())
            issued = Counter(conn.execute(select(issued_cards.c.card_uuid)).scalars())
            tokens = conn.execute(select(func.count()).select_from(used_jtis)).scalar_one()
    finally:
        engine.dispose()
    mine = {card: stored[card] for card in sent}
    assert mine == dict.fromkeys(sent, 1), "every feedback item stored exactly once"
    assert all(issued[card] == 1 for card in sent), "every issued card recorded once"
    assert tokens >= 2 * len(results), "each accepted token's jti is in the shared replay store"


def test_jwt_replayed_through_the_other_instance_is_refused(cluster: Cluster) -> None:
    service, body = build_request(CASE)
    path = f"/cds-services/{service}"
    token = cluster.token(path)
    first = cluster.post(cluster.proxy.base_url, path, body, token)
    assert first.status_code == 200, first.text
    served = first.headers["X-Upstream"]
    other = next(s for s in cluster.instances if f"127.0.0.1:{s.port}" != served)
    replay = cluster.post(other.base_url, path, body, token)
    assert replay.status_code == 401
    assert replay.json()["resourceType"] == "OperationOutcome"
    again = cluster.post(cluster.proxy.base_url, path, body, token)
    assert again.status_code == 401


def test_request_id_set_by_nginx_reaches_the_instance_and_comes_back(cluster: Cluster) -> None:
    mine = requests.get(cluster.proxy.url("/health/ready"), headers={"X-Request-Id": "ward-7-req-1"}, timeout=10)
    assert mine.headers["X-Request-Id"] == "ward-7-req-1"
    generated = requests.get(cluster.proxy.url("/health/ready"), timeout=10)
    assert len(generated.headers["X-Request-Id"]) == 32, "nginx's $request_id, passed through"


def test_each_instance_is_ready_on_the_migrated_database(cluster: Cluster) -> None:
    for server in cluster.instances:
        assert requests.get(server.url("/health/ready"), timeout=10).status_code == 200
    assert Path(cluster.proxy.config).exists()


def test_shipped_tls_front_config_terminates_tls(cluster: Cluster, tmp_path: Path) -> None:
    """docker/nginx/spinecds.conf as shipped (only upstream, port, certificate and log paths replaced)."""
    binary = nginx_binary()
    crt, pem = self_signed_certificate(tmp_path, "localhost")
    port = free_port()
    site = (ROOT / "docker" / "nginx" / "spinecds.conf").read_text(encoding="utf-8")
    site = (
        site.replace("server spinecds:8080;", f"server 127.0.0.1:{cluster.instances[0].port};")
        .replace("listen 443 ssl", f"listen 127.0.0.1:{port} ssl")
        .replace("/etc/nginx/tls/tls.crt", str(crt))
        .replace("/etc/nginx/tls/tls.key", str(pem))
        .replace("/var/log/nginx/access.log", str(tmp_path / "access.log"))
    )
    (tmp_path / "site.conf").write_text(site)
    (tmp_path / "tmp").mkdir()
    (tmp_path / "tmp").chmod(0o777)
    main = (
        f"daemon off; worker_processes 1; pid {tmp_path}/nginx.pid; error_log {tmp_path}/error.log;\n"
        "events { worker_connections 64; }\n"
        f"http {{ client_body_temp_path {tmp_path}/tmp/b; proxy_temp_path {tmp_path}/tmp/p; "
        f"fastcgi_temp_path {tmp_path}/tmp/f; uwsgi_temp_path {tmp_path}/tmp/u; scgi_temp_path {tmp_path}/tmp/s; "
        f"include {tmp_path}/site.conf; }}\n"
    )
    (tmp_path / "nginx.conf").write_text(main)
    tmp_path.chmod(0o755)
    args = [binary, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"), "-e", str(tmp_path / "error.log")]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        base = f"https://localhost:{port}"
        deadline = time.monotonic() + 15
        while True:
            try:
                ready = requests.get(base + "/health/ready", verify=str(crt), timeout=2)
                break
            except requests.RequestException:
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
                assert time.monotonic() < deadline, "nginx TLS front did not come up"
                time.sleep(0.1)
        assert ready.status_code == 200
        assert ready.headers["Strict-Transport-Security"].startswith("max-age=")
        assert len(ready.headers["X-Request-Id"]) == 32
        assert requests.get(base + "/metrics", verify=str(crt), timeout=5).status_code == 404, "not exposed publicly"
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(base + "/health/live", timeout=5)  # a certificate nobody trusts is refused
    finally:
        proc.terminate()
        proc.wait(timeout=10)
