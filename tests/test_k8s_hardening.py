"""docker/k8s beyond schema validity: the config volume can carry the JWK Sets an issuers file names,
the migrate init container needs only the database (and has resources), traffic is fenced by a
NetworkPolicy, and the namespace enforces the "restricted" Pod Security profile the pods meet."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml
from conftest import ROOT
from support.gunicorn import spinecds_command

K8S = ROOT / "docker" / "k8s"


def _objects(name: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all((K8S / name).read_text(encoding="utf-8")) if doc]


def _pod() -> dict[str, Any]:
    (deployment,) = [o for o in _objects("deployment.yaml") if o["kind"] == "Deployment"]
    return dict(deployment["spec"]["template"]["spec"])


def test_config_volume_projects_every_key_so_jwks_files_can_be_mounted() -> None:
    (config,) = [v for v in _pod()["volumes"] if v["name"] == "config"]
    assert "items" not in config["configMap"], "an items list mounts only the keys it names"
    (server,) = _pod()["containers"]
    assert {"name": "config", "mountPath": "/etc/spinecds", "readOnly": True} in server["volumeMounts"]


def test_migrate_init_container_needs_only_the_database(tmp_path: Path) -> None:
    (migrate,) = _pod()["initContainers"]
    assert migrate["resources"]["requests"] and migrate["resources"]["limits"]["memory"]
    assert all(m["name"] != "config" for m in migrate["volumeMounts"])
    settings = {
        k: str(v)
        for o in _objects("configmap.yaml")
        if o["metadata"]["name"] == "spinecds"
        for k, v in o["data"].items()
    }
    env = {
        "PATH": "/usr/bin:/bin",
        **settings,  # SPINECDS_ISSUERS_FILE names a file this container does not have
        **{e["name"]: e["value"] for e in migrate["env"]},
        "SPINECDS_DATABASE_URL": f"sqlite:///{tmp_path / 'm.db'}",
    }
    run = subprocess.run([*spinecds_command(), *migrate["args"]], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "database schema" in run.stdout


def test_every_container_meets_the_restricted_pod_security_profile() -> None:
    pod = _pod()
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    for container in pod["initContainers"] + pod["containers"]:
        sc = container["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"]
        assert sc["readOnlyRootFilesystem"] is True
        assert container["resources"]["limits"]["memory"]
    (namespace,) = _objects("namespace.yaml")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    assert kustomization["namespace"] == namespace["metadata"]["name"]


def test_network_policy_fences_ingress_and_egress() -> None:
    (policy,) = _objects("networkpolicy.yaml")
    assert policy["spec"]["podSelector"]["matchLabels"] == _pod_labels()
    assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    ingress_ports = {p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]}
    assert ingress_ports == {8080}
    egress_ports = {p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]}
    assert egress_ports == {53, 5432, 443}


def _pod_labels() -> dict[str, str]:
    (deployment,) = [o for o in _objects("deployment.yaml") if o["kind"] == "Deployment"]
    return dict(deployment["spec"]["template"]["metadata"]["labels"])
