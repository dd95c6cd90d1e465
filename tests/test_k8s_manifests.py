"""docker/k8s: every manifest is a valid Kubernetes object for the API versions we support.

Validated offline (kubernetes-validate ships the OpenAPI schemas) in strict mode, so a misspelt
field fails too; a broken copy of the Deployment shows the check can fail. The kustomization
lists every manifest but the example Secret (created by hand; see deployment.md).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import ValidationError

K8S = Path(__file__).resolve().parent.parent / "docker" / "k8s"
# the oldest Kubernetes minor still in upstream support when this was written, and the newest known
VERSIONS = ["1.30", kubernetes_validate.utils.latest_version()]
KUSTOMIZATION = yaml.safe_load((K8S / "kustomization.yaml").read_text())


def _objects(name: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all((K8S / name).read_text()) if doc]


MANIFESTS = sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("name", MANIFESTS)
def test_every_manifest_is_a_valid_kubernetes_object(name: str, version: str) -> None:
    objects = _objects(name)
    assert objects, f"{name} holds no object"
    for obj in objects:
        kubernetes_validate.validate(obj, version, strict=True)


def test_the_kustomization_applies_every_manifest_but_the_example_secret() -> None:
    assert sorted(KUSTOMIZATION["resources"]) == sorted(set(MANIFESTS) - {"secret.example.yaml"})


@pytest.mark.parametrize(
    "breakage",
    ["misspelt field", "wrong type", "missing required"],
)
def test_a_broken_deployment_is_refused(breakage: str) -> None:
    (deployment,) = [o for o in _objects("deployment.yaml") if o["kind"] == "Deployment"]
    broken = copy.deepcopy(deployment)
    container = broken["spec"]["template"]["spec"]["containers"][0]
    if breakage == "misspelt field":
        container["imagePullPolicyy"] = "IfNotPresent"
    elif breakage == "wrong type":
        broken["spec"]["replicas"] = "two"
    else:
        del container["name"]
    with pytest.raises(ValidationError):
        kubernetes_validate.validate(broken, VERSIONS[-1], strict=True)
