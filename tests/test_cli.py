"""``spinecds evaluate`` and ``spinecds rules`` on case files and shared fixtures (in process, and as a process)."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import CASE_NOW, FIXTURES, ROOT
from support.cases import CASES_DIR, build_request, card_indicators, comparable, fired_rules, load_cases

from service.cli import main

NOW = CASE_NOW.isoformat()


def spinecds_process(*args: str) -> subprocess.CompletedProcess[str]:
    """The command as a real process (the console-script entry point is ``service.cli:main``)."""
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def spinecds(*args: str) -> tuple[int, str, str]:
    """The command in this process (much faster than a process per call); returns code, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def evaluate_json(*paths: Path | str, extra: tuple[str, ...] = ()) -> tuple[int, dict[str, Any], str]:
    code, out, err = spinecds("evaluate", "--json", "--now", NOW, *extra, *map(str, paths))
    return code, json.loads(out), err


def test_worked_example_gives_vertebral_augmentation_card() -> None:
    case = CASES_DIR / "va-22-worked-example-eligible.json"
    code, out, _ = evaluate_json(case)
    assert code == 0
    (result,) = out["results"]
    assert result["service"] == "spine-metastasis-review"
    expect = json.loads(case.read_text())["expect"]
    fired = fired_rules(result["cards"])
    assert set(expect["fire"]) <= fired
    assert not set(expect["not_fire"]) & fired
    groups = card_indicators(result["cards"])
    for group, indicator in expect["cards"].items():
        assert groups[group] == indicator
    assert out["summary"]["cards"] == len(result["cards"])
    assert out["summary"]["cardsPerRule"]["VA-22"] >= 1


REQUEST_ONLY = {"other_patient_resources", "unreadable_resources", "paginated_keys", "prefetch_override"}


def test_every_case_file_gives_what_the_service_gives(client: Any) -> None:
    """Offline evaluation of each case equals the service's answer to the case's CDS Hooks request.

    Cases that change the request around the record (another patient's resources, unreadable
    resources, partial or wrong-shaped keys: the safety-* intake cases) describe a request, not a
    patient's record, so the offline reader (one request per patient in a record) cannot rebuild them.
    """
    cases = [(name, case) for name, case in load_cases() if not REQUEST_ONLY & set(case)]
    code, out, _ = evaluate_json(*(CASES_DIR / f"{name}.json" for name, _ in cases))
    by_input = {Path(r["input"]).stem: r for r in out["results"]}
    assert len(by_input) == len(cases)
    errors = 0
    for name, case in cases:
        service, body = build_request(case)
        response = client.post(f"/cds-services/{service}", json=body)
        offline = by_input[name]
        assert offline["service"] == service
        if response.status_code == 412:
            assert "required FHIR data unavailable" in offline["error"], name
            errors += 1
            continue
        assert response.status_code == 200, name
        assert "error" not in offline, (name, offline.get("error"))
        assert comparable(offline["cards"]) == comparable(response.get_json()["cards"]), name
    assert out["summary"]["errors"] == errors
    assert code == (1 if errors else 0)


def test_readable_table_and_summary() -> None:
    code, stdout, stderr = spinecds("evaluate", "--now", NOW, str(CASES_DIR / "va-22-worked-example-eligible.json"))
    assert code == 0, stderr
    lines = stdout.splitlines()
    assert lines[0].endswith("card(s)") and "[spine-metastasis-review]" in lines[0]
    assert lines[1].split() == ["indicator", "rules", "summary"]
    assert any(line.strip().startswith("info") and "VA-22" in line for line in lines)
    assert any(line.startswith("Summary: 1 evaluation(s)") and "0 error(s)" in line for line in lines)
    assert "\r" not in stderr  # no progress bar when stderr is not a terminal


def test_progress_bar_on_request() -> None:
    cases = sorted(CASES_DIR.glob("core-va0*.json"))[:3]
    code, stdout, stderr = spinecds("evaluate", "--json", "--progress", "--now", NOW, *map(str, cases))
    assert "0/3" in stderr and "file/s" in stderr
    assert json.loads(stdout)["summary"]["inputs"] == 3 and code == 0


def test_ndjson_bulk_export_folder_one_evaluation_per_patient() -> None:
    folder = FIXTURES / "smart_bulk_10_patients"
    patients = sum(1 for line in (folder / "Patient.000.ndjson").read_text().splitlines() if line.strip())
    code, out, _ = evaluate_json(folder)
    assert code == 0
    assert out["summary"]["inputs"] == patients == len(out["results"])
    assert all("cards" in r for r in out["results"])
    # only Patient, Condition and Procedure were exported: labs etc. stay unknown, so nothing may
    # be concluded from an "empty" lab list
    for r in out["results"]:
        for card in r["cards"]:
            for fact in card["extension"]["org.spinecds.trace"]["facts"]:
                if fact["id"] in {"F-INR", "F-PLT"}:
                    assert fact["value"] == "unknown"


def test_bundles_and_cds_hooks_request_files_from_shared_fixtures() -> None:
    bundle = FIXTURES / "mcode_trial_matching_app" / "TrialMatching_Patient01.json"
    foreign_request = FIXTURES / "ahrq_cql_services" / "patient_view_requests" / "unhealthy_patient.json"
    no_patient = FIXTURES / "fhir_r4_core_examples" / "bundle-example.json"
    code, out, _ = evaluate_json(bundle, foreign_request, no_patient)
    results = {Path(r["input"]).name: r for r in out["results"]}
    assert "cards" in results[bundle.name]
    # the AHRQ request uses other prefetch keys: like the service (412), offline it cannot evaluate
    assert "patient" in results[foreign_request.name]["error"]
    assert results[no_patient.name]["error"] == "no Patient resource with an id"
    assert out["summary"]["errors"] == 2 and out["summary"]["badInputs"] == 0
    assert code == 1


def test_our_own_request_file_is_evaluated_without_fetching(tmp_path: Path) -> None:
    case = dict(load_cases())["va-22-worked-example-eligible"]
    _, body = build_request(case)
    body["fhirServer"] = "http://127.0.0.1:9/fhir"  # offline: never contacted
    body["fhirAuthorization"] = {
        "access_token": "t",
        "token_type": "Bearer",
        "expires_in": 60,
        "scope": "patient/*.read",
        "subject": "x",
    }
    path = tmp_path / "request.json"
    path.write_text(json.dumps(body))
    code, out, _ = evaluate_json(path)
    assert code == 0
    assert "VA-22" in fired_rules(out["results"][0]["cards"])


def test_the_offline_pipeline_is_the_apps_but_never_fetches(tmp_path: Path) -> None:
    """One builder for the app and ``spinecds evaluate``; offline differs only in fetching nothing."""
    from service.app import create_app
    from service.cds.assemble import build_pipeline
    from service.config import Settings

    settings = Settings.from_env(
        {"SPINECDS_FHIR_SERVER_ALLOWLIST": "127.0.0.1", "SPINECDS_DATABASE_URL": f"sqlite:///{tmp_path / 'd.db'}"}
    )
    served = create_app(settings).extensions["spinecds"].pipeline
    offline = build_pipeline(settings, offline=True)
    assert served.limits.allowlist.refusal("http://127.0.0.1:8080/fhir") is None
    assert offline.limits.allowlist.refusal("http://127.0.0.1:8080/fhir") == "fhirServer host is not on the allowlist"
    assert offline.base.digest == served.base.digest
    assert (offline.limits.max_total_bytes, offline.surgical_backup) == (
        served.limits.max_total_bytes,
        served.surgical_backup,
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not JSON"),
        ('{"resourceType": "Observation"}', "not a CDS Hooks request"),
        ('{"hook": "medication-prescribe", "context": {}}', "not served here"),
        ('{"hook": "patient-view", "hookInstance": "x", "context": {}}', "context.userId"),
    ],
)
def test_bad_input_exits_2(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    good = CASES_DIR / "va-22-worked-example-eligible.json"
    code, out, _ = evaluate_json(path, good)
    assert code == 2
    bad = next(r for r in out["results"] if r["input"] == str(path))
    assert bad["badInput"] is True and message in bad["error"]
    assert out["summary"]["badInputs"] == 1 and out["summary"]["inputs"] == 2


def test_process_exit_codes() -> None:
    """As a real process: 0 fine, 1 an input could not be evaluated, 2 bad input."""
    good = str(CASES_DIR / "va-22-worked-example-eligible.json")
    unavailable = str(CASES_DIR / "core-conditions-unavailable-412.json")
    proc = spinecds_process("evaluate", "--now", NOW, good)
    assert proc.returncode == 0, proc.stderr
    assert "VA-22" in proc.stdout
    proc = spinecds_process("evaluate", "--now", NOW, good, unavailable)
    assert proc.returncode == 1 and "ERROR: required FHIR data unavailable" in proc.stdout
    proc = spinecds_process("evaluate", good, "/nonexistent/file.json")
    assert proc.returncode == 2 and "no such file" in proc.stdout


def test_bad_now_and_configuration_error_exit_2(monkeypatch: pytest.MonkeyPatch) -> None:
    good = str(CASES_DIR / "va-22-worked-example-eligible.json")
    code, _, err = spinecds("evaluate", "--now", "yesterday", good)
    assert code == 2 and "--now" in err
    monkeypatch.setenv("SPINECDS_SPINE_SURGICAL_BACKUP", "maybe")
    code, _, err = spinecds("evaluate", good)
    assert code == 2 and "SPINECDS_SPINE_SURGICAL_BACKUP" in err


def test_rules_lists_the_catalogue_as_table_and_json() -> None:
    code, stdout, stderr = spinecds("rules", "--json")
    assert code == 0, stderr
    catalogue = json.loads(stdout)
    ids = [r["id"] for r in catalogue["rules"]]
    assert "VA-22" in ids and len(ids) == len(set(ids))
    va22 = next(r for r in catalogue["rules"] if r["id"] == "VA-22")
    assert va22["sources"] and va22["needs"] and va22["title"]
    with_thresholds = [r for r in catalogue["rules"] if r["thresholdsInForce"]]
    assert with_thresholds and all(
        isinstance(t["localDefault"], bool) for r in with_thresholds for t in r["thresholdsInForce"]
    )

    code, table, _ = spinecds("rules")
    assert code == 0
    rows = {line.split()[0] for line in table.splitlines()[2:] if line.strip()}
    assert set(ids) <= rows
    assert f"{len(ids)} rules, rule base {catalogue['ruleBase']}" in table


def test_rules_marks_site_thresholds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    overrides = tmp_path / "thresholds.yaml"
    overrides.write_text("pain.moderate: 5\n")
    monkeypatch.setenv("SPINECDS_THRESHOLDS_FILE", str(overrides))
    catalogue = json.loads(spinecds("rules", "--json")[1])
    used = [t for r in catalogue["rules"] for t in r["thresholdsInForce"] if t["name"] == "pain.moderate"]
    assert used and all(t["value"] == 5 and t["localDefault"] is False for t in used)
