"""The console's pages and JSON API: catalogue, samples, Bundle -> request, feedback rates per rule."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import CASE_NOW, FIXTURES
from support.cases import CASES_DIR, fired_rules
from support.cds_checker import check_cards_response, check_operation_outcome, errors_only

from service.app import create_app
from service.console.samples import SAMPLES_DIR, generated_samples, main, render_case_sample, sample_index
from service.fhir.date_shift import shift_dates


@pytest.fixture(scope="module")
def console_app(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Own SQLite file: the feedback counts below must not see other tests' cards."""
    db = tmp_path_factory.mktemp("console-db") / "console.db"
    return create_app({"database_url": f"sqlite:///{db}"}, clock=lambda: CASE_NOW)


@pytest.fixture()
def cc(console_app: Any) -> Any:
    with console_app.test_client() as c:
        yield c


def run_sample(cc: Any, sample_id: str) -> tuple[str, list[dict[str, Any]]]:
    prepared = cc.get(f"/console/api/samples/{sample_id}/request")
    assert prepared.status_code == 200
    (req,) = prepared.get_json()["requests"]
    response = cc.post(f"/cds-services/{req['service']}", json=req["request"])
    assert response.status_code == 200
    body = response.get_json()
    assert errors_only(check_cards_response(body)) == []
    return req["service"], body["cards"]


def test_page_is_served_with_a_strict_content_security_policy(cc: Any) -> None:
    for path in ("/console", "/console/"):
        page = cc.get(path)
        assert page.status_code == 200 and page.mimetype == "text/html"
        assert b"<main" in page.data and b'lang="en"' in page.data
        csp = page.headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    html = cc.get("/console").data.decode()
    for asset in ("/console/static/console.js", "/console/static/console.css", "/console/static/markdown.js"):
        assert asset in html
        assert cc.get(asset).status_code == 200
    assert "http://" not in html.split("<body", 1)[0] and "https://" not in html.split("<body", 1)[0]  # no CDN


def test_catalogue_lists_every_rule_with_needs_conclusions_and_thresholds(cc: Any) -> None:
    catalogue = cc.get("/console/api/rules").get_json()
    reference = cc.get("/rules").get_json()
    assert catalogue["ruleBase"] == reference["ruleBase"]
    assert [r["id"] for r in catalogue["rules"]] == [r["id"] for r in reference["rules"]]
    va22 = next(r for r in catalogue["rules"] if r["id"] == "VA-22")
    assert va22["needs"] and va22["sources"] and va22["concludes"]
    thresholds = {t["name"]: t for r in catalogue["rules"] for t in r["thresholdsInForce"]}
    assert thresholds and all(t["localDefault"] is True for t in thresholds.values())
    assert all(isinstance(t["value"], int | float) for t in thresholds.values())


def test_site_threshold_is_flagged(tmp_path: Path) -> None:
    overrides = tmp_path / "t.yaml"
    overrides.write_text("pain.moderate: 5\n")
    app = create_app({"database_url": f"sqlite:///{tmp_path / 'db.sqlite'}", "thresholds_file": str(overrides)})
    catalogue = app.test_client().get("/console/api/rules").get_json()
    used = [t for r in catalogue["rules"] for t in r["thresholdsInForce"] if t["name"] == "pain.moderate"]
    assert used and all(t["value"] == 5 and t["localDefault"] is False for t in used)


def test_every_sample_is_listed_with_its_source_and_runs(cc: Any) -> None:
    listed = cc.get("/console/api/samples").get_json()["samples"]
    assert [s["id"] for s in listed] == [s["id"] for s in sample_index()]
    sources = (SAMPLES_DIR / "SOURCES.md").read_text()
    for sample in sample_index():
        assert (SAMPLES_DIR / sample["file"]).is_file()
        assert sample["file"] in sources and sample["source"]
        run_sample(cc, sample["id"])


def test_samples_from_cases_are_generated_from_them(capsys: pytest.CaptureFixture[str]) -> None:
    """A sample that comes from a patient case is what the generator writes from the case as it is now."""
    generated = generated_samples()
    assert set(generated) == {s["file"] for s in sample_index() if s.get("case")} and len(generated) == 6
    for name, text in generated.items():
        committed = (SAMPLES_DIR / name).read_text(encoding="utf-8")
        assert committed == text, f"{name} is stale: regenerate with python -m service.console.samples"
        assert "expect" not in json.loads(committed)
    assert main(["--check"]) == 0 and "current" in capsys.readouterr().out
    with pytest.raises(ValueError, match="paginated_keys"):
        render_case_sample({"resources": [], "paginated_keys": ["conditions"]})


def test_worked_example_sample_gives_the_augmentation_card(cc: Any) -> None:
    _, cards = run_sample(cc, "va-22-worked-example")
    expect = json.loads((CASES_DIR / "va-22-worked-example-eligible.json").read_text())["expect"]
    assert set(expect["fire"]) <= fired_rules(cards)
    groups = {c["extension"]["org.spinecds.trace"]["card"]: c["indicator"] for c in cards}
    assert groups["va-eligibility"] == "info"


def test_sample_dates_follow_the_service_clock(tmp_path: Path) -> None:
    """Run 200 days after the cases' reference instant, the sample still gives the same card."""
    later = CASE_NOW + timedelta(days=200)
    app = create_app({"database_url": f"sqlite:///{tmp_path / 'db.sqlite'}"}, clock=lambda: later)
    client = app.test_client()
    (req,) = client.get("/console/api/samples/va-22-worked-example/request").get_json()["requests"]
    cards = client.post(f"/cds-services/{req['service']}", json=req["request"]).get_json()["cards"]
    assert "VA-22" in fired_rules(cards)
    original = json.loads((CASES_DIR / "va-22-worked-example-eligible.json").read_text())["resources"]
    shifted = [
        e["resource"] for k, v in req["request"]["prefetch"].items() if v and k != "patient" for e in v.get("entry", [])
    ]
    dated = [r for r in original if "effectiveDateTime" in r]
    assert dated
    by_id = {r["id"]: r for r in shifted}
    for resource in dated:
        assert by_id[resource["id"]]["effectiveDateTime"] == shift_dates(resource["effectiveDateTime"], 200)


def test_shift_dates_only_touches_full_dates() -> None:
    data = {
        "a": "2026-06-01",
        "b": "2026-06-01T10:00:00Z",
        "c": "2026",
        "d": "2026-06",
        "e": "T12",
        "f": [3, "x"],
        "g": "2026-02-30",
    }
    assert shift_dates(data, 1) == {**data, "a": "2026-06-02", "b": "2026-06-02T10:00:00Z"}


def test_pasted_bundle_and_request_become_cds_hooks_requests(cc: Any) -> None:
    bundle = json.loads((FIXTURES / "mcode_trial_matching_app" / "TrialMatching_Patient01.json").read_text())
    prepared = cc.post("/console/api/requests", json={"data": bundle, "hook": "patient-view"})
    assert prepared.status_code == 200
    (req,) = prepared.get_json()["requests"]
    assert req["service"] == "spine-metastasis-review"
    assert req["request"]["context"]["patientId"] == bundle["entry"][0]["resource"]["id"]
    response = cc.post(f"/cds-services/{req['service']}", json=req["request"])
    assert response.status_code == 200
    assert errors_only(check_cards_response(response.get_json())) == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"nodata": 1}, "send {"),
        ({"data": {"resourceType": "Observation"}}, "not a CDS Hooks request"),
        ({"data": {"resourceType": "Bundle", "entry": []}}, "no Patient"),
        ({"data": {"hook": "medication-prescribe", "context": {}}}, "not served here"),
    ],
)
def test_bad_pasted_data_is_an_operation_outcome(cc: Any, body: Any, message: str) -> None:
    response = cc.post("/console/api/requests", json=body)
    assert response.status_code == 400
    outcome = response.get_json()
    assert errors_only(check_operation_outcome(outcome)) == []
    assert message in json.dumps(outcome)


def test_unknown_sample_is_404(cc: Any) -> None:
    response = cc.get("/console/api/samples/nope/request")
    assert response.status_code == 404
    assert response.get_json()["resourceType"] == "OperationOutcome"


def test_feedback_rates_per_rule_join_feedback_to_issued_cards(cc: Any) -> None:
    before = {r["rule"]: r for r in cc.get("/console/api/feedback-stats").get_json()["rules"]}
    service, cards = run_sample(cc, "va-22-worked-example")
    va = next(c for c in cards if c["extension"]["org.spinecds.trace"]["card"] == "va-eligibility")
    other = next(c for c in cards if c is not va)
    now = "2026-06-01T12:00:00Z"
    items = [
        {
            "card": va["uuid"],
            "outcome": "accepted",
            "outcomeTimestamp": now,
            "acceptedSuggestions": [{"id": va["suggestions"][0]["uuid"]}],
        }
        if va.get("suggestions")
        else {"card": va["uuid"], "outcome": "overridden", "outcomeTimestamp": now},
        {
            "card": other["uuid"],
            "outcome": "overridden",
            "outcomeTimestamp": now,
            "overrideReason": {"userComment": "x"},
        },
        {"card": "not-a-card-we-issued", "outcome": "overridden", "outcomeTimestamp": now},
    ]
    assert cc.post(f"/cds-services/{service}/feedback", json={"feedback": items}).status_code == 200
    stats = cc.get("/console/api/feedback-stats").get_json()
    after = {r["rule"]: r for r in stats["rules"]}
    va_outcome = items[0]["outcome"]
    for rule in va["extension"]["org.spinecds.trace"]["rules"]:
        old = before.get(rule, {"issued": 0, "accepted": 0, "overridden": 0})
        in_other = rule in other["extension"]["org.spinecds.trace"]["rules"]
        assert after[rule][va_outcome] == old[va_outcome] + 1 + (1 if in_other and va_outcome == "overridden" else 0)
        assert after[rule]["issued"] == old["issued"] + sum(
            rule in c["extension"]["org.spinecds.trace"]["rules"] for c in cards
        )
        total = after[rule]["accepted"] + after[rule]["overridden"]
        assert after[rule]["feedback"] == total
        assert after[rule]["acceptanceRate"] == round(after[rule]["accepted"] / total, 4)
    assert stats["unmatchedFeedback"] == 1


def test_console_can_be_disabled(tmp_path: Path) -> None:
    app = create_app({"database_url": f"sqlite:///{tmp_path / 'db.sqlite'}", "console": "disabled"})
    client = app.test_client()
    for path in ("/console", "/console/api/rules", "/console/static/console.js"):
        response = client.get(path)
        assert response.status_code == 404
        assert response.get_json()["resourceType"] == "OperationOutcome"
    assert client.get("/cds-services").status_code == 200


def test_console_setting_is_validated() -> None:
    from service.config import ConfigError, Settings

    with pytest.raises(ConfigError, match="SPINECDS_CONSOLE"):
        Settings.from_env({"SPINECDS_CONSOLE": "maybe"})
