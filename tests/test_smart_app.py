"""The SMART app closes the loop (docs/smart-app.md), end to end on loopback.

A test EHR (SMART authorization server + FHIR server with writes, ``tests/support/smart_ehr.py``),
spinecds under gunicorn fetching from it, and headless Chromium (every non-loopback request
blocked): patient-view -> the card's ``smart`` link -> EHR launch with PKCE -> the forms, prefilled
-> Observations written -> a second patient-view whose cards changed. Plus the refusals (no
launch context, an EHR that refuses a write), keyboard-only use and contrast. Skipped without
chromium/Playwright unless SPINECDS_REQUIRE_BROWSER=1. Screenshots go to $SPINECDS_TEST_ARTIFACTS.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
import requests
from conftest import ROOT
from support.gunicorn import SpinecdsServer, free_port
from support.smart_ehr import SmartEhr, refuse_code
from test_console_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, _contrast, _tab_to, require_browser

LOCAL = "https://fhir.spinecds.org/CodeSystem/spinecds-local"
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
CLIENT_ID = "spinecds-test-client"
PATIENT = "smart-pt-1"
CLINICIAN = "Practitioner/dr-launch"
T12 = {"coding": [{"system": SNOMED, "code": "280849005", "display": "Body of twelfth thoracic vertebra"}]}
DOCS_SCREENSHOT = ROOT / "docs" / "img" / "smart-app.png"


def _active() -> dict[str, Any]:
    return {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]}


def patient_record(now: datetime) -> list[dict[str, Any]]:
    """RULE-CATALOGUE §5.5 worked example (T12 pathological VCF, STIR-hyperintense, NRS 8 on oxycodone,
    midline pain, normal coagulation, allergy list) without a neurological exam: VA-24 (pending)."""
    when = (now - timedelta(days=3)).isoformat()
    subject = {"reference": f"Patient/{PATIENT}"}

    def obs(oid: str, system: str, code: str, **value: Any) -> dict[str, Any]:
        return {
            "resourceType": "Observation",
            "id": oid,
            "status": "final",
            "code": {"coding": [{"system": system, "code": code}]},
            "subject": subject,
            "effectiveDateTime": when,
            **value,
        }

    return [
        {
            "resourceType": "Patient",
            "id": PATIENT,
            "name": [{"given": ["Ada"], "family": "Testpatient"}],
            "gender": "female",
            "birthDate": "1963-02-01",
        },
        {
            "resourceType": "Condition",
            "id": "vcf-t12",
            "clinicalStatus": _active(),
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "M84.58XA"}]},
            "bodySite": [T12],
            "subject": subject,
        },
        {
            "resourceType": "Condition",
            "id": "met-t12",
            "clinicalStatus": _active(),
            "code": {"coding": [{"system": SNOMED, "code": "94222008"}]},
            "bodySite": [T12],
            "subject": subject,
        },
        {**obs("stir", LOCAL, "stir-hyperintense-vertebra", valueBoolean=True), "bodySite": T12},
        obs("pain", LOINC, "72514-3", valueInteger=8),
        obs("midline", LOCAL, "pain-midline-reproducible", valueBoolean=True),
        obs(
            "plt",
            LOINC,
            "777-3",
            valueQuantity={"value": 180, "unit": "10*3/uL", "system": "http://unitsofmeasure.org", "code": "10*3/uL"},
        ),
        obs("inr", LOINC, "6301-6", valueQuantity={"value": 1.1}),
        {
            "resourceType": "MedicationRequest",
            "id": "oxy",
            "status": "active",
            "intent": "order",
            "medicationCodeableConcept": {
                "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "7804"}]
            },
            "subject": subject,
        },
        {
            "resourceType": "AllergyIntolerance",
            "id": "pcn",
            "clinicalStatus": {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "active"}
                ]
            },
            "code": {"text": "penicillin"},
            "patient": subject,
        },
    ]


@dataclass
class Loop:
    ehr: SmartEhr
    spinecds: str
    server: SpinecdsServer

    def patient_view(self) -> list[dict[str, Any]]:
        token = self.ehr.issue_token(PATIENT)
        body = {
            "hook": "patient-view",
            "hookInstance": str(uuid.uuid4()),
            "fhirServer": self.ehr.base_url,
            "fhirAuthorization": {
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": 300,
                "scope": "patient/*.read",
                "subject": "spinecds",
            },
            "context": {"userId": CLINICIAN, "patientId": PATIENT},
        }
        r = requests.post(f"{self.spinecds}/cds-services/spine-metastasis-review", json=body, timeout=30)
        assert r.status_code == 200, r.text
        cards: list[dict[str, Any]] = r.json()["cards"]
        return cards

    def launch_url(self, link: dict[str, Any], app_context: str | None, *, user: str | None = CLINICIAN) -> str:
        launch = self.ehr.register_launch(PATIENT, f"{self.ehr.base_url}/{user}" if user else None, app_context)
        return f"{link['url']}?{urlencode({'iss': self.ehr.base_url, 'launch': launch})}"


def smart_links(cards: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [link for c in cards for link in c.get("links", []) if link.get("type") == "smart"]


def asked_facts(cards: list[dict[str, Any]]) -> set[str]:
    return {a["fact"] for link in smart_links(cards) for a in json.loads(link["appContext"])["asks"]}


def fired(cards: list[dict[str, Any]]) -> set[str]:
    return {rid for c in cards for rid in c["extension"]["org.spinecds.trace"]["rules"]}


@pytest.fixture(scope="module")
def loop() -> Iterator[Loop]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with SmartEhr(client_id=CLIENT_ID, redirect_uri=f"{base}/smart/app") as ehr:
        env = {
            "SPINECDS_PUBLIC_BASE_URL": base,
            "SPINECDS_FHIR_SERVER_ALLOWLIST": f"127.0.0.1:{ehr.port}",
            "SPINECDS_SMART_CLIENT_ID": CLIENT_ID,
        }
        with SpinecdsServer(env, port=port, workers=1, threads=4) as server:
            yield Loop(ehr, base, server)


@pytest.fixture()
def ehr(loop: Loop) -> Loop:
    """A fresh record for each test (same servers)."""
    loop.ehr.clear_resources()
    loop.ehr.add_many(patient_record(datetime.now(UTC)))
    loop.ehr.written.clear()
    loop.ehr.problems.clear()
    loop.ehr.refuse = None
    loop.ehr.ignore_patient_search = False
    loop.ehr.clear_log()
    return loop


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    require_browser()
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture()
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    foreign: list[str] = []
    errors: list[str] = []

    def only_loopback(route: Any) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            foreign.append(route.request.url)
            route.abort()

    context.route("**/*", only_loopback)
    pg = context.new_page()
    pg.set_default_timeout(20_000)
    pg.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
    try:
        yield pg
    finally:
        pg.screenshot(path=str(ARTIFACTS / f"smart-{request.node.name}-final.png"), full_page=True)
        context.close()
    assert foreign == []  # no CDN, no request off the machine
    assert errors == []


def _fill_data_gap_forms(page: Any) -> None:
    sins = {"location": 3, "pain": 3, "bone-lesion": 2, "alignment": 0, "collapse": 2, "posterolateral": 0}
    for component, points in sins.items():
        page.check(f'input[name="sins-sins-{component}"][value="{points}"]')
    assert (
        page.inner_text("#sins-total")
        == "SINS 10: indeterminate (potentially unstable): surgical consultation before RT"
    )
    for part in ("motor", "sensory", "sphincter"):
        page.check(f'input[name="neuro-{part}"][value="normal"]')
    page.check('input[name="performance-scale"][value="ecog"]')
    page.check('input[name="performance-ecog"][value="1"]')


def _escc_by_keyboard(page: Any) -> None:
    """ESCC grade 0 with the keyboard only, from the top of the page: skip link, Tab to the grade, Space."""
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip-link"
    _tab_to(page, "el.name === 'escc-value'")
    page.keyboard.press("Space")  # the first grade (0) is selected
    assert page.evaluate("document.activeElement.value") == "escc-0"
    assert page.is_checked('input[name="escc-value"][value="escc-0"]')
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"  # a visible focus indicator
    assert page.is_checked("#include-escc")  # choosing a value ticks "Record this now"


def test_card_link_launch_record_and_the_cards_change(ehr: Loop, page: Any) -> None:
    before = ehr.patient_view()
    assert "VA-24" in fired(before) and "VA-22" not in fired(before)  # augmentation pending the neuro exam
    link = next(link for link in smart_links(before) if "F-NEURO-DEFICIT" in json.dumps(json.loads(link["appContext"])))
    assert link["label"] == "Record the missing items"
    assert link["url"] == f"{ehr.spinecds}/smart/launch"
    asks = json.loads(link["appContext"])["asks"]
    assert {"F-ESCC", "F-SINS", "F-NEURO-DEFICIT", "F-ECOG"} <= {a["fact"] for a in asks}

    page.goto(ehr.launch_url(link, link["appContext"]))
    page.wait_for_selector('section[data-form="sins"]')
    # launched, authorized with PKCE, redirected back; fhirclient then drops code and state from the address
    assert page.url == f"{ehr.spinecds}/smart/app"
    assert [r.method for r in ehr.ehr.requests if r.path.startswith("/auth/")] == ["GET", "POST"]
    assert ehr.ehr.problems == []
    assert "Ada Testpatient" in page.inner_text("#patient-banner")
    shown = set(page.eval_on_selector_all("section[data-form]", "els => els.map(e => e.dataset.form)"))
    asked_forms = {a["form"] for a in asks}
    assert shown == asked_forms | ({"tokuhashi"} if "life-expectancy" in asked_forms else set())  # one form per ask
    assert "ESCC (Bilsky) grade not documented" in page.inner_text('section[data-form="escc"] .why')
    assert "MD-07" in page.inner_text('section[data-form="escc"] .why')
    # contrast of the text the clinician must read (WCAG AA 4.5:1)
    for selector in ("#h-sins", 'section[data-form="escc"] .why', 'section[data-form="sins"] .source', "#write"):
        assert _contrast(page, selector) >= 4.5, selector
    _escc_by_keyboard(page)
    _fill_data_gap_forms(page)
    for form in shown - {"sins", "escc", "neuro", "performance", "tokuhashi"}:  # this card's other asks, if any
        page.check(f"#include-{form}")
    if "life-expectancy" in shown:
        page.fill("#life-expectancy-value", "12")
    for code in ("infection-screen-negative", "prone-tolerance", "pain-midline-reproducible"):
        for radio in page.query_selector_all(f'input[name$="-{code}"][value="true"]'):
            radio.check()
    page.screenshot(path=str(ARTIFACTS / "smart-forms-filled.png"), full_page=True)
    _tab_to(page, "el.id === 'write'")
    page.keyboard.press("Enter")
    page.locator("#results-summary", has_text="observation(s) written").wait_for()
    assert page.locator("#results-list li.refused").count() == 0
    assert page.evaluate("document.activeElement.id") == "results-heading"  # focus moves to the outcome
    assert page.locator("main").count() == 1 and page.locator("header").count() == 1
    for radio in page.query_selector_all("input[type=radio], input[type=checkbox]"):  # every control labelled
        assert page.locator(f'label[for="{radio.get_attribute("id")}"]').count() == 1
    page.screenshot(path=str(ARTIFACTS / "smart-written.png"), full_page=True)
    if os.environ.get("SPINECDS_UPDATE_DOCS_IMG") == "1":  # docs/img/smart-app.png (committed)
        page.screenshot(path=str(DOCS_SCREENSHOT), full_page=True)

    # what landed on the EHR: the codes the service reads, for the context patient, by the launching user
    assert ehr.ehr.problems == []
    written = {c["code"]: o for o in ehr.ehr.written for c in o["code"]["coding"]}
    assert written["escc-grade"]["valueCodeableConcept"]["coding"][0] == {
        "system": LOCAL,
        "code": "escc-0",
        "display": "ESCC grade 0",
    }
    assert written["sins-total"]["valueInteger"] == 10
    assert written["sins-location"]["valueInteger"] == 3
    assert len(written["sins-total"]["derivedFrom"]) == 6
    assert written["neuro-deficit"]["valueBoolean"] is False
    assert written["89247-1"]["valueInteger"] == 1 and written["89247-1"]["code"]["coding"][0]["system"] == LOINC
    for o in ehr.ehr.written:
        assert o["status"] == "final"
        assert o["subject"] == {"reference": f"Patient/{PATIENT}"}
        assert o["performer"] == [{"reference": CLINICIAN}]
        assert datetime.now(UTC) - datetime.fromisoformat(o["effectiveDateTime"]) < timedelta(minutes=5)
        assert o["category"][0]["coding"][0]["system"].endswith("observation-category")

    # the EHR calls the hook again: the asks for the recorded items are gone, the decision changed
    after = ehr.patient_view()
    assert not asked_facts(after) & {"F-ESCC", "F-SINS", "F-NEURO-DEFICIT", "F-ECOG", "F-KPS"}
    assert "VA-24" not in fired(after)
    assert {"MD-07", "MD-08", "MD-09", "MD-10"}.isdisjoint(fired(after))
    assert "NEU-03" in fired(after)  # SINS 10: potentially unstable, now said
    logs = ehr.server.output()
    assert "/smart/api/check" in logs  # the access lines are there ...
    for phi in (PATIENT, "Testpatient", "1963-02-01", "escc-0"):  # ... and no patient data
        assert phi not in logs


def test_prefilled_from_the_record_without_app_context(ehr: Loop, page: Any) -> None:
    now = datetime.now(UTC)
    ehr.ehr.add_many(
        [
            {
                "resourceType": "Observation",
                "id": "escc-old",
                "status": "final",
                "code": {"coding": [{"system": LOCAL, "code": "escc-grade"}]},
                "subject": {"reference": f"Patient/{PATIENT}"},
                "effectiveDateTime": (now - timedelta(days=20)).isoformat(),
                "valueCodeableConcept": {"coding": [{"system": LOCAL, "code": "escc-1b"}]},
            },
            {
                "resourceType": "Observation",
                "id": "kps",
                "status": "final",
                "code": {"coding": [{"system": LOINC, "code": "89243-0"}]},
                "subject": {"reference": f"Patient/{PATIENT}"},
                "effectiveDateTime": (now - timedelta(days=2)).isoformat(),
                "valueInteger": 70,
            },
            {  # another patient's ESCC: never shown
                "resourceType": "Observation",
                "id": "escc-other",
                "status": "final",
                "code": {"coding": [{"system": LOCAL, "code": "escc-grade"}]},
                "subject": {"reference": "Patient/someone-else"},
                "effectiveDateTime": now.isoformat(),
                "valueCodeableConcept": {"coding": [{"system": LOCAL, "code": "escc-3"}]},
            },
        ]
    )
    link = smart_links(ehr.patient_view())[0]
    ehr.ehr.ignore_patient_search = True  # and whose searches answer with every patient's data
    page.goto(ehr.launch_url(link, None))  # an EHR that does not pass appContext
    page.wait_for_selector('section[data-form="focused-exam"]')
    assert "not passed by the EHR" in page.inner_text("#status")
    assert page.locator("section[data-form]").count() == 9  # every form
    assert page.is_checked('input[name="escc-value"][value="escc-1b"]')
    assert "ESCC grade 1b" in page.inner_text('section[data-form="escc"] .prefill') or "escc-1b" in page.inner_text(
        'section[data-form="escc"] .prefill'
    )
    assert page.is_checked('input[name="performance-kps"][value="70"]')
    assert "Karnofsky 70" in page.inner_text('section[data-form="performance"] .prefill')
    assert "midline" in page.inner_text('section[data-form="focused-exam"] .prefill').lower()
    assert not page.is_checked("#include-escc")  # prefilled values are not rewritten unless ticked
    alert = page.locator('section[data-form="neuro"] .emergency')
    assert alert.is_hidden()
    page.check('input[name="neuro-motor"][value="abnormal"]')
    page.check("#neuro-progress")
    assert alert.is_visible() and "emergency" in alert.inner_text()
    page.uncheck("#include-neuro")
    page.click("#write")
    page.locator("#results-summary", has_text="no form is ticked").wait_for()
    assert ehr.ehr.written == []


def test_refused_write_shows_the_operation_outcome_and_what_was_not_written(ehr: Loop, page: Any) -> None:
    ehr.ehr.refuse = refuse_code("escc-grade", "ESCC must be entered by radiology (test refusal)")
    link = next(link for link in smart_links(ehr.patient_view()) if '"F-ESCC"' in link["appContext"])
    page.goto(ehr.launch_url(link, link["appContext"]))
    page.wait_for_selector('section[data-form="escc"]')
    _fill_data_gap_forms(page)
    page.check('input[name="escc-value"][value="escc-2"]')
    page.click("#write")
    page.locator("#results-summary", has_text="refused a write").wait_for()
    refused = page.inner_text("#results-list li.refused")
    assert "refused by the EHR" in refused and "ESCC must be entered by radiology (test refusal)" in refused
    assert "business-rule" in refused
    written_codes = {c["code"] for o in ehr.ehr.written for c in o["code"]["coding"]}
    assert "escc-grade" not in written_codes
    assert "sins-total" in written_codes  # written before the refusal, and listed as written
    assert page.locator("#results-list li.written").count() == len(ehr.ehr.written)
    skipped = page.locator("#results-list li.skipped")
    assert skipped.count() >= 2 and "not written" in skipped.first.inner_text()  # neuro exam, ECOG: said, not lost
    assert "neuro-deficit" not in written_codes and "89247-1" not in written_codes
    page.screenshot(path=str(ARTIFACTS / "smart-refused.png"), full_page=True)


def test_launch_without_a_smart_context_is_refused(ehr: Loop, page: Any) -> None:
    for query in ("", f"?iss={ehr.ehr.base_url}", "?launch=abc", "?iss=https://evil.example/fhir&launch=abc"):
        response = page.goto(f"{ehr.spinecds}/smart/launch{query}")
        assert response.status == 400
        assert page.url == f"{ehr.spinecds}/smart/launch{query}"  # no redirect
        assert "Nothing was read from or written to any record" in page.inner_text("main")
    assert "must be launched from the EHR" in page.inner_text("#refusal") or "allowlist" in page.inner_text("#refusal")
    page.goto(f"{ehr.spinecds}/smart/launch?iss=https://evil.example/fhir&launch=abc")
    assert "SPINECDS_FHIR_SERVER_ALLOWLIST" in page.inner_text("#refusal")
    assert _contrast(page, "#refusal") >= 4.5
    page.goto(f"{ehr.spinecds}/smart/app")  # the app opened without a launch
    page.locator("#status.refusal").wait_for()
    assert "must be launched from the EHR" in page.inner_text("#status")
    assert page.locator("section[data-form]").count() == 0
    assert ehr.ehr.requests == []  # the EHR was never contacted
    assert ehr.ehr.written == []
    # a launch whose id_token does not name the user: nothing can be recorded as someone's
    link = smart_links(ehr.patient_view())[0]
    page.goto(ehr.launch_url(link, link["appContext"], user=None))
    page.locator("#status.refusal").wait_for()
    assert "did not say who you are" in page.inner_text("#status")
    assert page.locator("section[data-form]").count() == 0 and ehr.ehr.written == []


def test_pages_carry_a_strict_content_security_policy(ehr: Loop) -> None:
    for path in ("/smart/app", "/smart/launch", "/smart/api/config"):
        r = requests.get(f"{ehr.spinecds}{path}", timeout=10)
        csp = r.headers["Content-Security-Policy"]
        assert "script-src 'self';" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert f"connect-src 'self' https://127.0.0.1:{ehr.ehr.port} http://127.0.0.1:{ehr.ehr.port};" in csp
        assert r.headers["Referrer-Policy"] == "no-referrer"
        assert r.headers["Cache-Control"] == "no-store"
    config = requests.get(f"{ehr.spinecds}/smart/api/config", timeout=10).json()
    assert config["clientId"] == CLIENT_ID
    assert config["scope"].split() >= ["launch"] and "patient/Observation.c" in config["scope"]
    html = Path(ROOT / "service" / "smart_app" / "static" / "app.html").read_text(encoding="utf-8")
    assert "<script>" not in html and "http" not in html.replace("https://", "")  # no inline script, no CDN


# ------------------------------------------------------------------ without a browser: the link, the check, the forms


@pytest.fixture(scope="module")
def app_client() -> Any:
    from service.app import create_app

    app = create_app(
        {"database_url": "sqlite:///:memory:", "public_base_url": "https://cds.example.org/"},
        clock=lambda: datetime(2026, 6, 1, 12, tzinfo=UTC),  # the clock the patient cases are written against
    )
    return app.test_client()


def _observation(code: dict[str, str], **value: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": CATEGORY, "code": "exam"}]}],
        "code": {"coding": [code]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": datetime.now(UTC).isoformat(),
        "performer": [{"reference": CLINICIAN}],
        **value,
    }


CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
ESCC_OBS = _observation(
    {"system": LOCAL, "code": "escc-grade"}, valueCodeableConcept={"coding": [{"system": LOCAL, "code": "escc-1c"}]}
)


def _check(app_client: Any, form: str, resources: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    body = {"form": form, "patient": "Patient/p1", "performer": CLINICIAN, "resources": resources, **extra}
    answer: dict[str, Any] = app_client.post("/smart/api/check", json=body).get_json()
    return answer


def test_the_check_reads_each_form_back_as_its_fact(app_client: Any) -> None:
    sins = [_observation({"system": LOCAL, "code": c}, valueInteger=2) for c in ("sins-location", "sins-pain")]
    cases: dict[str, tuple[list[dict[str, Any]], dict[str, Any]]] = {
        "escc": ([ESCC_OBS], {"F-ESCC": "1c"}),
        "sins": ([*sins, _observation({"system": LOCAL, "code": "sins-total"}, valueInteger=4)], {"F-SINS": 4}),
        "performance": ([_observation({"system": LOINC, "code": "89243-0"}, valueInteger=60)], {"F-KPS": 60}),
        "life-expectancy": (
            [
                _observation(
                    {"system": LOCAL, "code": "life-expectancy-estimate"},
                    valueQuantity={"value": 2, "unit": "years", "system": "http://unitsofmeasure.org", "code": "a"},
                )
            ],
            {"F-LE": 24},
        ),
        "neuro": (
            [_observation({"system": LOCAL, "code": "neuro-deficit"}, valueBoolean=True)],
            {"F-NEURO-DEFICIT": True},
        ),
        "tokuhashi": (
            [_observation({"system": LOCAL, "code": "tokuhashi-revised-total"}, valueInteger=10)],
            {"F-TOK-TOTAL": 10},
        ),
        "infection": (
            [_observation({"system": LOCAL, "code": "infection-screen-negative"}, valueBoolean=True)],
            {"F-INFECT-SCREEN": True},
        ),
        "prone": (
            [_observation({"system": LOCAL, "code": "prone-tolerance"}, valueBoolean=False)],
            {"F-PRONE-OK": False},
        ),
    }
    for form, (resources, expected) in cases.items():
        answer = _check(app_client, form, resources)
        assert answer["ok"], (form, answer)
        for fid, value in expected.items():
            assert answer["facts"][fid] == {"known": True, "value": value}, form


def test_the_check_refuses_what_would_be_wrong_to_write(app_client: Any) -> None:
    def issues(resource: dict[str, Any], form: str = "escc", **extra: Any) -> str:
        answer = _check(app_client, form, [resource], **extra)
        assert not answer["ok"]
        return " | ".join(answer["issues"])

    assert "subject is not the patient in context" in issues({**ESCC_OBS, "subject": {"reference": "Patient/p2"}})
    assert "performer must be the launching user" in issues(
        {**ESCC_OBS, "performer": [{"reference": "Practitioner/x"}]}
    )
    assert "status must be final" in issues({**ESCC_OBS, "status": "preliminary"})
    assert "effectiveDateTime is required" in issues({k: v for k, v in ESCC_OBS.items() if k != "effectiveDateTime"})
    assert "not one this form writes" in issues(ESCC_OBS, form="prone")
    wrong_answer = {**ESCC_OBS, "valueCodeableConcept": {"coding": [{"system": LOCAL, "code": "escc-9"}]}}
    assert "would not read these as F-ESCC" in issues(wrong_answer) or "escc-9" in issues(wrong_answer)
    near_miss = {
        **ESCC_OBS,
        "code": {"coding": [{"system": "https://fhir.spinecds.org/CodeSystem/local", "code": "escc-grade"}]},
    }
    assert issues(near_miss)
    huge = _observation({"system": LOCAL, "code": "sins-total"}, valueInteger=10**400)  # no 500, not written
    assert "would not read" in issues(huge, form="sins")
    assert "performer" in issues(ESCC_OBS, performer=None)
    assert "unknown form" in issues(ESCC_OBS, form="nope")


def test_every_form_writes_codes_the_service_defines() -> None:
    from service.smart_app.forms import forms, written_codes

    local = json.loads((ROOT / "fhir_profiles" / "CodeSystem-spinecds-local.json").read_text(encoding="utf-8"))
    defined = {c["code"] for c in local["concept"]}
    from service.facts.extract import EXTRACTORS

    for form in forms():
        for system, code in written_codes(form):
            assert system in {LOCAL, LOINC}
            assert system != LOCAL or code in defined, code
        assert all(fid in EXTRACTORS for fid in form["facts"]), form["id"]
    escc = next(f for f in forms() if f["id"] == "escc")
    assert [o["code"] for o in escc["options"]] == ["escc-0", "escc-1a", "escc-1b", "escc-1c", "escc-2", "escc-3"]
    sins = next(f for f in forms() if f["id"] == "sins")
    assert sum(max(o["points"] for o in item["options"]) for item in sins["items"]) == 18  # SINS 0-18


def test_the_card_link_is_a_valid_cds_hooks_smart_link(app_client: Any) -> None:
    from support.cases import build_request
    from support.cds_checker import check_cards_response, errors_only

    case = json.loads((ROOT / "tests" / "cases" / "cat-md-04-06-14-va-workup.json").read_text(encoding="utf-8"))
    service, body = build_request(case)
    answer = app_client.post(f"/cds-services/{service}", json=body).get_json()
    assert errors_only(check_cards_response(answer)) == []
    links = smart_links(answer["cards"])
    assert links and all(link["url"] == "https://cds.example.org/smart/launch" for link in links)
    asks = [a for link in links for a in json.loads(link["appContext"])["asks"]]
    assert {"F-ESCC", "F-INFECT-SCREEN"} <= {a["fact"] for a in asks}
    assert all(set(a) == {"fact", "form", "rule", "why"} and a["why"] for a in asks)
    escc = next(a for a in asks if a["fact"] == "F-ESCC")
    assert escc["rule"] == "MD-07" and escc["form"] == "escc"


def test_launch_refusals_without_a_browser(app_client: Any) -> None:
    r = app_client.get("/smart/launch?iss=http://127.0.0.1:1/fhir&launch=x")
    assert r.status_code == 400 and "SPINECDS_FHIR_SERVER_ALLOWLIST" in r.get_data(as_text=True)  # empty allowlist
    r = app_client.get("/smart/launch")
    assert r.status_code == 400 and "iss and launch" in r.get_data(as_text=True)
    assert "Location" not in r.headers
    r = app_client.get("/smart/launch?iss=%3Cscript%3E&launch=%3Cb%3E")
    assert "<script>" not in r.get_data(as_text=True)


def test_prognosis_ask_offers_the_tokuhashi_items_as_the_alternative(ehr: Loop, page: Any) -> None:
    before = ehr.patient_view()
    assert "MD-13" in fired(before)
    link = next(link for link in smart_links(before) if '"F-LE"' in link["appContext"])
    page.goto(ehr.launch_url(link, link["appContext"]))
    page.wait_for_selector('section[data-form="tokuhashi"]')
    assert "alternative to an estimate" in page.inner_text('section[data-form="tokuhashi"] .why')
    items = {"kps": 2, "extraspinal-bone": 1, "vertebral-mets": 2, "visceral": 2, "primary": 5, "palsy": 2}
    for item, points in items.items():
        page.check(f'input[name="tokuhashi-tokuhashi-{item}-points"][value="{points}"]')
    assert page.inner_text("#tokuhashi-total") == "Tokuhashi 14: predicted survival ≥ 1 year"
    page.click("#write")
    page.locator("#results-summary", has_text="7 observation(s) written").wait_for()
    total = next(o for o in ehr.ehr.written if o["code"]["coding"][0]["code"] == "tokuhashi-revised-total")
    assert total["valueInteger"] == 14 and len(total["derivedFrom"]) == 6
    after = ehr.patient_view()
    assert "MD-13" not in fired(after) and "F-LE" not in asked_facts(after)
    # the prognosis advice changed: it may lead its own card or be folded into a decision card's detail
    texts = [c["summary"] + "\n" + c["detail"] for c in after]
    assert any("Revised Tokuhashi 12-15" in t for t in texts), [c["summary"] for c in after]
    assert not any("Revised Tokuhashi 12-15" in c["summary"] + c["detail"] for c in before)


def test_a_new_deficit_recorded_in_the_app_raises_the_emergency(ehr: Loop, page: Any) -> None:
    """Deficit + ESCC 3 written by the app: the next patient-view leads with the cord-compression emergency
    and withholds the routine augmentation advice (the emergency outranks it, whatever else is known)."""
    link = next(link for link in smart_links(ehr.patient_view()) if '"F-NEURO-DEFICIT"' in link["appContext"])
    page.goto(ehr.launch_url(link, link["appContext"]))
    page.wait_for_selector('section[data-form="neuro"]')
    page.check('input[name="neuro-motor"][value="abnormal"]')
    page.check('input[name="neuro-sensory"][value="normal"]')
    page.check('input[name="neuro-sphincter"][value="normal"]')
    page.fill("#neuro-onset", (datetime.now(UTC) - timedelta(days=1)).date().isoformat())
    page.check("#neuro-progress")
    assert page.locator('section[data-form="neuro"] .emergency').is_visible()
    page.check('input[name="escc-value"][value="escc-3"]')
    page.click("#write")
    page.locator("#results-summary", has_text="2 observation(s) written").wait_for()
    exam = next(o for o in ehr.ehr.written if o["code"]["coding"][0]["code"] == "neuro-deficit")
    assert exam["valueBoolean"] is True
    assert {"code": {"text": "Motor (limb power)"}, "valueCodeableConcept": {"text": "Weakness"}} in exam["component"]
    assert any(c.get("valueDateTime") for c in exam["component"])
    after = ehr.patient_view()
    assert after[0]["indicator"] == "critical" and "NEU-01" in fired(after[:1])
    assert "VA-24" not in fired(after) and "VA-22" not in fired(after)
    assert "withheld" in after[0]["detail"].lower()
