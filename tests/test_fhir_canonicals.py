"""Every canonical URL of ours (https://fhir.spinecds.org/...) that the service emits, the rule files name or
the FHIR package references is defined by a resource in the package; the override-reason CodeSystem is
served at its canonical path, identical to the package's copy."""

from __future__ import annotations

import json
import re
from typing import Any

from conftest import ROOT
from support.cases import build_request, load_cases

from service.conformance.fhir_package import PACKAGE_DIR, index
from service.fhir_api.codesystems import OVERRIDE_REASON_URL

CANONICAL = re.compile(r"https://fhir\.spinecds\.org/[A-Za-z]+/[A-Za-z0-9][A-Za-z0-9.\-]*")


def _defined() -> set[str]:
    return {str(e["url"]) for e in index(PACKAGE_DIR)["files"]}


def _urls(text: str) -> set[str]:
    return {m.rstrip(".") for m in CANONICAL.findall(text)}


def _service_output(client: Any) -> str:
    parts = [client.get(path).get_data(as_text=True) for path in ("/cds-services", "/fhir/metadata")]
    parts += [client.get("/fhir/PlanDefinition").get_data(as_text=True)]
    parts += [client.get("/fhir/CodeSystem/override-reason").get_data(as_text=True)]
    for _name, case in load_cases():
        service, body = build_request(case)
        response = client.post(f"/cds-services/{service}", json=body)
        parts.append(response.get_data(as_text=True))
    return "\n".join(parts)


def _served(client: Any, url: str) -> bool:
    """PlanDefinitions are generated from the loaded rule base (their version is its hash), so the service
    publishes them itself, at /fhir/<type>/<id> with that canonical url; they are not in the package."""
    rtype, rid = url.rsplit("/", 2)[-2:]
    response = client.get(f"/fhir/{rtype}/{rid}")
    return response.status_code == 200 and response.get_json().get("url") == url


def test_every_canonical_the_service_emits_is_defined_in_the_package_or_served(client: Any) -> None:
    emitted = _urls(_service_output(client))
    assert OVERRIDE_REASON_URL in emitted  # cards carry overrideReasons
    undefined = emitted - _defined()
    assert {u.rsplit("/", 2)[-2] for u in undefined} == {"PlanDefinition"}
    assert [u for u in undefined if not _served(client, u)] == []


def test_every_canonical_in_rules_source_and_package_is_defined() -> None:
    texts = [p.read_text(encoding="utf-8") for p in sorted((ROOT / "rules").glob("*.yaml"))]
    texts += [p.read_text(encoding="utf-8") for p in sorted(PACKAGE_DIR.glob("*.json"))]
    texts += [p.read_text(encoding="utf-8") for p in sorted((ROOT / "service").rglob("*.py"))]
    used = set().union(*(_urls(t) for t in texts))
    assert "https://fhir.spinecds.org/StructureDefinition/verification-status" in used
    assert {u for u in used - _defined() if "/PlanDefinition/" not in u} == set()


def test_override_reason_codesystem_is_served_as_published(client: Any) -> None:
    response = client.get("/fhir/CodeSystem/override-reason")
    assert response.status_code == 200 and response.mimetype == "application/fhir+json"
    served = response.get_json()
    published = json.loads((PACKAGE_DIR / "CodeSystem-override-reason.json").read_text(encoding="utf-8"))
    assert served == published
    base = client.application.extensions["spinecds"].pipeline.base
    assert [c["code"] for c in served["concept"]] == [r["code"] for r in base.override_reasons]
    # the codes a card offers are exactly the CodeSystem's
    card_codes = set()
    for _name, case in load_cases()[:5]:
        service, body = build_request(case)
        for card in client.post(f"/cds-services/{service}", json=body).get_json()["cards"]:
            card_codes |= {(r["system"], r["code"]) for r in card.get("overrideReasons", [])}
    assert card_codes and card_codes <= {(OVERRIDE_REASON_URL, c["code"]) for c in served["concept"]}
    missing = client.get("/fhir/CodeSystem/spinecds-local")
    assert missing.status_code == 404 and missing.get_json()["resourceType"] == "OperationOutcome"


def test_capability_statement_lists_the_codesystem_read(client: Any) -> None:
    (rest,) = client.get("/fhir/metadata").get_json()["rest"]
    cs = [r for r in rest["resource"] if r["type"] == "CodeSystem"]
    assert cs and cs[0]["interaction"] == [{"code": "read"}]
