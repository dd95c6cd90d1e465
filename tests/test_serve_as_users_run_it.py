"""``spinecds serve`` the way users start it: ``scripts/serve`` in a plain environment (no
PROMETHEUS_MULTIPROC_DIR, which only the image sets)."""

from __future__ import annotations

from pathlib import Path

import requests
from conftest import ROOT, load_json
from support.cases import CASES_DIR, build_request
from support.gunicorn import SpinecdsServer, free_port
from test_metrics import samples, total

CASE = load_json(CASES_DIR / "va-22-worked-example-eligible.json")


def test_scripts_serve_exposes_service_metrics_and_leaves_no_temp_dir(tmp_path: Path) -> None:
    tmp = tmp_path / "tmp"  # the process's temp dir, so what it leaves behind is visible here only
    tmp.mkdir()
    port = free_port()
    server = SpinecdsServer(
        {"TMPDIR": str(tmp)},
        command=[str(ROOT / "scripts" / "serve")],  # it adds "serve"
        argv=["--host", "127.0.0.1", "--port", str(port), "--workers", "2", "--threads", "2"],
        port=port,
    )
    assert "PROMETHEUS_MULTIPROC_DIR" not in server.env
    with server:
        service, body = build_request(CASE)
        for _ in range(3):  # both workers likely answer one
            response = requests.post(server.url(f"/cds-services/{service}"), json=body, timeout=60)
            assert response.status_code in (200, 412), response.text
        scrape = samples(requests.get(server.url("/metrics"), timeout=10).text)
        assert total(scrape, "spinecds_cds_service_calls_total", service=service) == 3
        assert total(scrape, "spinecds_http_requests_total", route="/cds-services/<service_id>") == 3
        assert list(tmp.glob("spinecds-metrics-*")), "the samples live in a private temp dir while it runs"
        assert server.terminate() == 0
        assert "engine durable-rules 2.0.28+spinecds.1 (patched)" in server.output(), "the start says which engine"
        assert "spinecds ready" not in server.output(), "readiness is /health/ready's to say (503 until migrated)"
    assert not list(tmp.glob("spinecds-metrics-*")), "the metrics temp dir is removed at exit"
