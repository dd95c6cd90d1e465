"""The documented CDS Hooks Sandbox recipe (docs/security.md, docs/examples/sandbox-issuers.yaml) on the
real server: Sandbox tokens, jku header included, pass; the same key on file without the jku allowlist
refuses them; a token minted for another host name gets the generic 401 and a log line naming ``aud``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml
from conftest import ROOT
from support.gunicorn import SpinecdsServer
from support.jwt_tools import FIXTURES, SANDBOX_ISS, SANDBOX_JKU, Client

RECIPE = ROOT / "docs" / "examples" / "sandbox-issuers.yaml"


def serve(issuers: Path) -> SpinecdsServer:
    server = SpinecdsServer({"SPINECDS_AUTH": "required", "SPINECDS_ISSUERS_FILE": str(issuers)})
    server.env["SPINECDS_PUBLIC_BASE_URL"] = server.base_url  # http://127.0.0.1:<port>
    return server.start()


@pytest.fixture(scope="module")
def recipe_server() -> Iterator[SpinecdsServer]:
    server = serve(RECIPE)
    try:
        yield server
    finally:
        server.stop()


def discovery(server: SpinecdsServer, aud_base: str | None = None) -> requests.Response:
    sandbox = Client.sandbox()
    assert sandbox.jku == SANDBOX_JKU, "tokens carry the Sandbox's jku header, as the Sandbox's do"
    token = sandbox.mint(f"{aud_base or server.base_url}/cds-services", time.time())
    return requests.get(server.url("/cds-services"), headers={"Authorization": f"Bearer {token}"}, timeout=10)


def test_the_recipe_is_the_documented_one() -> None:
    text = (ROOT / "docs" / "security.md").read_text(encoding="utf-8")
    assert "docs/examples/sandbox-issuers.yaml" in text
    (entry,) = yaml.safe_load(RECIPE.read_text(encoding="utf-8"))["issuers"]
    assert entry["iss"] == SANDBOX_ISS and SANDBOX_JKU in entry["jku_allowlist"]
    assert (RECIPE.parent / entry["jwks_file"]).resolve() == FIXTURES / "sandbox-jwks.json"


def test_sandbox_tokens_pass_with_the_recipe(recipe_server: SpinecdsServer) -> None:
    response = discovery(recipe_server)
    assert response.status_code == 200, response.text
    assert response.json()["services"]


def test_key_on_file_without_the_jku_allowlist_refuses_sandbox_tokens(tmp_path: Path) -> None:
    issuers = tmp_path / "issuers.yaml"
    issuers.write_text(
        yaml.safe_dump({"issuers": [{"iss": SANDBOX_ISS, "jwks_file": str(FIXTURES / "sandbox-jwks.json")}]})
    )
    server = serve(issuers)
    try:
        assert discovery(server).status_code == 401
        time.sleep(0.5)  # the log line is written after the response
        assert "JWT refused: jku_not_allowed" in server.output()
    finally:
        server.stop()


def test_wrong_host_name_gets_a_generic_401_and_a_log_line_naming_aud(recipe_server: SpinecdsServer) -> None:
    called_as = recipe_server.base_url.replace("127.0.0.1", "localhost")  # the integrator's browser URL
    response = discovery(recipe_server, aud_base=called_as)
    assert response.status_code == 401
    assert response.json()["issue"][0]["diagnostics"] == "authentication required"
    assert "aud" not in response.text and "localhost" not in response.text, "nothing about the claim leaks"
    deadline = time.monotonic() + 5
    while "aud mismatch" not in recipe_server.output() and time.monotonic() < deadline:
        time.sleep(0.1)
    line = next(ln for ln in recipe_server.output().splitlines() if "aud mismatch" in ln)
    assert "JWT refused: aud" in line
    assert f"expected '{recipe_server.base_url}/cds-services'" in line
    assert f"{called_as}/cds-services" in line


def test_every_call_leaves_one_audit_line_with_issuer_client_and_service(recipe_server: SpinecdsServer) -> None:
    sandbox = Client.sandbox()
    service = "spine-metastasis-review"
    url = recipe_server.url(f"/cds-services/{service}")
    token = sandbox.mint(url, time.time(), sub="sandbox-client-42")
    body = {"hook": "patient-view", "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea", "context": {}}
    response = requests.post(url, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert response.status_code == 400  # no patient in context: a clear error, audited all the same
    deadline = time.monotonic() + 5
    while "client='sandbox-client-42'" not in recipe_server.output() and time.monotonic() < deadline:
        time.sleep(0.1)
    (line,) = [ln for ln in recipe_server.output().splitlines() if "client='sandbox-client-42'" in ln]
    assert '"logger": "spinecds.audit"' in line
    assert f"audit: POST call status=400 iss='{SANDBOX_ISS}'" in line
    assert f"service='{service}'" in line
    assert token not in recipe_server.output()
    unauthenticated = requests.get(recipe_server.url("/cds-services"), timeout=10)
    assert unauthenticated.status_code == 401
    time.sleep(0.3)
    assert "audit: GET discovery status=401 iss=unauthenticated" in recipe_server.output()
