"""GET /fhir/PlanDefinition: one R4 eca-rule PlanDefinition per CDS service, generated from the rule base."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import ROOT
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.plandefinition import PlanDefinition
from support.cases import build_request, load_cases
from support.cds_checker import check_operation_outcome, errors_only

from service.cds.definitions import SERVICES
from service.engine.ruleset import load_rulebase
from service.fhir_api.plandefinition import order_dependent, rules_for_hook

FHIR_JSON = "application/fhir+json"


def _get(client: Any, path: str) -> Any:
    response = client.get(path)
    assert response.mimetype == FHIR_JSON, (path, response.mimetype)
    return response


def test_search_returns_a_valid_searchset_of_every_service(client: Any) -> None:
    response = _get(client, "/fhir/PlanDefinition")
    assert response.status_code == 200
    bundle = response.get_json()
    Bundle.model_validate(bundle)
    assert bundle["type"] == "searchset" and bundle["total"] == len(SERVICES)
    assert {e["resource"]["id"] for e in bundle["entry"]} == set(SERVICES)
    for entry in bundle["entry"]:
        assert entry["fullUrl"].endswith(f"/fhir/PlanDefinition/{entry['resource']['id']}")


@pytest.mark.parametrize("service_id", sorted(SERVICES))
def test_read_is_a_valid_eca_rule_plan_definition(client: Any, service_id: str) -> None:
    body = _get(client, f"/fhir/PlanDefinition/{service_id}").get_json()
    plan = PlanDefinition.model_validate(body)
    base = client.application.extensions["spinecds"].pipeline.base
    assert plan.url == f"https://fhir.spinecds.org/PlanDefinition/{service_id}"
    assert plan.version == base.digest and plan.status == "draft"
    assert plan.type.coding[0].code == "eca-rule"
    ids = [a["id"] for a in body["action"]]
    assert len(ids) == len(set(ids)) and ids == rules_for_hook(base, SERVICES[service_id].hook)
    for action in body["action"]:
        rules = base.by_id(action["id"])
        assert action["title"] == rules[0].title
        assert len(action["condition"]) == len(rules)
        assert all(c["kind"] == "applicability" and c["expression"]["expression"] for c in action["condition"])
        # every fact a rule reads appears in its condition text
        for rule, cond in zip(rules, action["condition"], strict=True):
            for fid in rule.reads_facts | rule.reads_derived:
                assert fid in cond["expression"]["expression"]
        labels = {d.get("label") for d in action.get("documentation", [])}
        for rule in rules:
            assert {s.strip("[]") for s in rule.sources} <= labels
            assert {q["seed"] for q in (rule.conclude or {}).get("quotes", [])} <= labels


def test_unknown_plan_definition_is_404_operation_outcome(client: Any) -> None:
    response = _get(client, "/fhir/PlanDefinition/no-such-service")
    assert response.status_code == 404
    assert errors_only(check_operation_outcome(response.get_json())) == []


def test_search_by_id_and_unsupported_parameter(client: Any) -> None:
    bundle = _get(client, "/fhir/PlanDefinition?_id=spine-procedure-order-sign").get_json()
    assert [e["resource"]["id"] for e in bundle["entry"]] == ["spine-procedure-order-sign"]
    assert _get(client, "/fhir/PlanDefinition?_id=nope").get_json()["total"] == 0
    response = _get(client, "/fhir/PlanDefinition?subject=Patient/1")
    assert response.status_code == 400


def test_service_membership_is_derived_from_the_rules() -> None:
    base = load_rulebase(ROOT / "rules")
    dependent = order_dependent(base)
    assert {"VA-27", "RT-13", "RT-14"} <= dependent
    assert "VA-26" not in dependent  # more than 3 acute painful levels is said at patient-view too
    patient_view = set(rules_for_hook(base, "patient-view"))
    order_sign = set(rules_for_hook(base, "order-sign"))
    assert dependent.isdisjoint(patient_view) and dependent <= order_sign
    assert {"NEU-01", "VA-06", "VA-26"} <= patient_view & order_sign  # emergency rules are shared
    assert patient_view | order_sign == set(base.rule_ids)
    assert rules_for_hook(base, "order-select") == rules_for_hook(base, "order-sign")


def test_every_rule_a_patient_view_card_cites_is_an_action(client: Any) -> None:
    actions = {a["id"] for a in _get(client, "/fhir/PlanDefinition/spine-metastasis-review").get_json()["action"]}
    order_actions = {
        a["id"] for a in _get(client, "/fhir/PlanDefinition/spine-procedure-order-sign").get_json()["action"]
    }
    base = client.application.extensions["spinecds"].pipeline.base
    dependent = order_dependent(base)
    seen = 0
    for _name, case in load_cases():
        service, body = build_request(case)
        response = client.post(f"/cds-services/{service}", json=body)
        if response.status_code != 200:
            continue
        cited = {r for c in response.get_json()["cards"] for r in c["extension"]["org.spinecds.trace"]["rules"]}
        if body["hook"] == "patient-view":
            assert cited <= actions, cited - actions
            seen += len(cited)
        else:
            assert cited & dependent <= order_actions
    assert seen > 100
