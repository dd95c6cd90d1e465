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
        # one applicability condition in FHIRPath (R4 ANDs several conditions: variants are OR-ed inside)
        (cond,) = action["condition"]
        assert cond["kind"] == "applicability" and cond["expression"]["language"] == "text/fhirpath"
        assert action["trigger"] == [{"type": "named-event", "name": SERVICES[service_id].hook}]
        # every fact a rule reads appears in its condition
        for rule in rules:
            for fid in rule.reads_facts | rule.reads_derived:
                assert f"'{fid}'" in cond["expression"]["expression"]
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


def test_metadata_is_a_valid_r4_capability_statement_of_the_plan_definition_endpoint(client: Any) -> None:
    from fhir.resources.R4B.capabilitystatement import CapabilityStatement

    response = _get(client, "/fhir/metadata")
    assert response.status_code == 200
    body = response.get_json()
    CapabilityStatement.model_validate(body)
    assert body["fhirVersion"] == "4.0.1" and body["kind"] == "instance"
    (rest,) = body["rest"]
    resources = {r["type"]: r for r in rest["resource"]}
    assert set(resources) == {"PlanDefinition", "CodeSystem"}
    resource = resources["PlanDefinition"]
    assert {i["code"] for i in resource["interaction"]} == {"read", "search-type"}
    served = {p["name"] for p in resource["searchParam"]}
    # every advertised search parameter is honoured, and nothing else is
    assert client.get("/fhir/PlanDefinition?" + "&".join(f"{p}=x" for p in served)).status_code == 200
    assert client.get("/fhir/PlanDefinition?code=x").status_code == 400


@pytest.mark.parametrize(
    ("query", "accept"),
    [
        ("?_format=xml", None),
        ("?_format=application/fhir%2Bxml", None),
        ("?_format=ttl", None),
        ("", "application/fhir+xml"),
        ("", "application/xml, text/xml"),
        ("", "text/turtle"),
        ("?_format=xml", "application/fhir+json"),  # _format overrides Accept
    ],
)
@pytest.mark.parametrize(
    "path", ["/fhir/metadata", "/fhir/PlanDefinition", "/fhir/PlanDefinition/spine-metastasis-review"]
)
def test_formats_other_than_json_are_not_acceptable(client: Any, path: str, query: str, accept: str | None) -> None:
    headers = {"Accept": accept} if accept else {}
    response = client.get(path + query, headers=headers)
    assert response.status_code == 406, (path, query, accept, response.status_code)
    assert errors_only(check_operation_outcome(response.get_json())) == []


@pytest.mark.parametrize(
    ("query", "accept"),
    [
        ("", None),
        ("", "*/*"),
        ("", "application/fhir+json"),
        ("", "application/json"),
        ("", "application/fhir+xml;q=0.9, application/fhir+json"),
        ("?_format=json", None),
        ("?_format=application/fhir%2Bjson", "application/fhir+xml"),
    ],
)
def test_json_is_served_whenever_it_is_acceptable(client: Any, query: str, accept: str | None) -> None:
    headers = {"Accept": accept} if accept else {}
    response = client.get("/fhir/metadata" + query, headers=headers)
    assert response.status_code == 200 and response.mimetype == FHIR_JSON


def test_every_served_condition_executes_in_a_fhirpath_engine_as_the_rule_engine_concluded(client: Any) -> None:
    """Each action's FHIRPath condition, run by fhirpathpy over %facts of a patient case, is true exactly when
    the rule engine concluded that rule (conclusions), or derived its value (derivations), for every case."""
    from fhirpathpy import compile as fhirpath_compile
    from fhirpathpy.models import models

    from service.cds.request import parse_hook_request
    from service.fhir_api.fhirpath import facts_parameters

    pipeline = client.application.extensions["spinecds"].pipeline
    base = pipeline.base
    actions = {
        a["id"]: fhirpath_compile(a["condition"][0]["expression"]["expression"], models["r4"])
        for sid in SERVICES
        for a in _get(client, f"/fhir/PlanDefinition/{sid}").get_json()["action"]
    }
    assert set(actions) == set(base.rule_ids)
    true_seen: set[str] = set()
    checked = 0
    for name, case in load_cases():
        service, body = build_request(case)
        try:
            decision = pipeline.run(parse_hook_request(body, SERVICES[service]))
        except Exception:  # noqa: BLE001 - 412/400 cases have no evaluation
            continue
        evaluation = decision.evaluation
        parameters = facts_parameters(evaluation)["parameter"]
        concluded = {f.rule.id for f in evaluation.conclusions}
        derived_by = {f.rule.id for d in evaluation.derived.values() for f in d.firings if not f.possible}
        for rid, condition in actions.items():
            rules = base.by_id(rid)
            reads = {t for r in rules for t in r.reads_facts | r.reads_derived}
            # only the parameters of the facts the rule reads (fhirpathpy scans every parameter per atom: ~50x
            # faster; the expression filters by name itself, so its truth is the same on the whole %facts)
            env = {"facts": {"resourceType": "Parameters", "parameter": [p for p in parameters if p["name"] in reads]}}
            result = condition({}, env)
            assert result in ([True], [False]), (name, rid, result)
            if any(r.conclude for r in rules):
                expected = rid in concluded
            elif rid in derived_by:
                expected = True
            else:
                continue  # a derivation that lost to a higher-precedence value is not recorded by the engine
            assert result == [expected], f"{name}: {rid} FHIRPath {result[0]} but the engine {expected}"
            checked += 1
            if expected:
                true_seen.add(rid)
    assert checked > 1000 and len(true_seen) > 40, (checked, len(true_seen))
