"""The HL7 CDS Hooks Sandbox, a real third-party CDS client, against the real server.

Everything on loopback: the Sandbox's build (``../shared/clients/cds-hooks-sandbox``, Apache-2.0)
served as static files, a FHIR server the browser can use (``FhirTestServer(browser=True)``: CORS,
``/metadata``, ``POST [type]/_search``) holding two patient cases, and ``spinecds serve`` (gunicorn)
with ``SPINECDS_AUTH=required`` trusting the Sandbox issuer by the documented recipe
(docs/examples/sandbox-issuers.yaml). Headless Chromium (Playwright, Debian's chromium) opens the
Sandbox; every request leaving 127.0.0.1 is aborted (the Sandbox also tries its public services).

The Sandbox fills all prefetch templates itself, signs discovery, calls and feedback with ES384 JWTs,
renders the cards, and sends feedback when a suggestion is taken or a card dismissed. Screenshots
go to ``SPINECDS_TEST_ARTIFACTS`` (default ``test-artifacts/``, git-ignored), one per test.

Skipped (with the reason) when the build, Playwright or chromium is missing, unless
SPINECDS_REQUIRE_BROWSER=1 (``.ci/run``).
"""

from __future__ import annotations

import functools
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from conftest import CASE_NOW, ROOT, load_json
from sqlalchemy import select
from support.cases import CASES_DIR
from support.fhir_server import FhirTestServer
from support.gunicorn import SpinecdsServer
from test_console_browser import CHROMIUM, require_browser

from service.db import feedback_items, issued_cards, make_engine
from service.fhir.date_shift import shift_dates

SANDBOX = ROOT.parent / "shared" / "clients" / "cds-hooks-sandbox"
BUILD = SANDBOX / "build"
RECIPE = ROOT / "docs" / "examples" / "sandbox-issuers.yaml"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"]
ARTIFACTS = Path(os.environ.get("SPINECDS_TEST_ARTIFACTS", str(ROOT / "test-artifacts"))) / "sandbox"
LOOPBACK = {"127.0.0.1", "localhost"}
METASTASIS = "va-22-worked-example-eligible"  # patient "worked": VA-22 eligible, RT-01
CORD_COMPRESSION = "core-emergency-overrides-eligible"  # patient "emerg1": NEU-01 emergency
CARD = '.MuiCard-root[class*="card-list__decision-card"]'
SEVERITY = ("critical", "warning", "info")


def _sandbox_missing() -> str | None:
    if not (BUILD / "index.html").is_file():
        return f"the CDS Hooks Sandbox build is not at {BUILD} (../shared/clients/cds-hooks-sandbox)"
    return None


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class World:
    sandbox_url: str
    fhir: FhirTestServer
    service: SpinecdsServer
    browser: Any
    blocked: list[str] = field(default_factory=list)

    def url(self, patient_id: str) -> str:
        query = {
            "fhirServiceUrl": self.fhir.base_url,
            "patientId": patient_id,
            "serviceDiscoveryURL": self.service.url("/cds-services"),
        }
        return f"{self.sandbox_url}/?{urlencode(query)}"

    def feedback(self) -> list[dict[str, Any]]:
        """The feedback the service stored, in order, with the group of the card it answers."""
        engine = make_engine(self.service.env["SPINECDS_DATABASE_URL"])
        joined = feedback_items.outerjoin(issued_cards, issued_cards.c.card_uuid == feedback_items.c.card_uuid)
        query = select(feedback_items, issued_cards.c.card_group).select_from(joined).order_by(feedback_items.c.id)
        try:
            with engine.connect() as db:
                return [dict(row._mapping) for row in db.execute(query)]
        finally:
            engine.dispose()


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    require_browser(_sandbox_missing())
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    print(f"\nSandbox screenshots: {ARTIFACTS}")
    days = (datetime.now(UTC).date() - CASE_NOW.date()).days  # the cases' "last 7 days" stay recent
    static = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(BUILD)))
    threading.Thread(target=static.serve_forever, daemon=True).start()
    fhir = FhirTestServer(browser=True).start()
    for case in (METASTASIS, CORD_COMPRESSION):
        fhir.add_many(shift_dates(load_json(CASES_DIR / f"{case}.json")["resources"], days))
    service = SpinecdsServer(
        {
            "SPINECDS_AUTH": "required",
            "SPINECDS_ISSUERS_FILE": str(RECIPE),
            "SPINECDS_FHIR_SERVER_ALLOWLIST": f"127.0.0.1:{fhir.port}",
        },
        workers=2,
    )
    service.env["SPINECDS_PUBLIC_BASE_URL"] = service.base_url  # the URL the Sandbox calls: its JWTs' aud
    try:
        service.start()
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                yield World(f"http://127.0.0.1:{static.server_address[1]}", fhir, service, browser)
            finally:
                browser.close()
        log = service.output()
        assert "JWT refused" not in log, "every Sandbox request was signed and accepted"
        assert "Traceback" not in log
    finally:
        service.stop()
        fhir.stop()
        static.shutdown()
        static.server_close()


@pytest.fixture()
def page(world: World, request: pytest.FixtureRequest) -> Iterator[Any]:
    context = world.browser.new_context(viewport={"width": 1400, "height": 1000})

    def only_loopback(route: Any) -> None:
        if urlsplit(route.request.url).hostname in LOOPBACK:
            route.continue_()
        else:
            world.blocked.append(route.request.url)
            route.abort()

    context.route("**/*", only_loopback)
    pg = context.new_page()
    pg.set_default_timeout(20_000)
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield pg
    finally:
        pg.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
        context.close()
    assert errors == []


def open_patient(page: Any, world: World, case: str) -> list[dict[str, Any]]:
    """Open the Sandbox's Patient View for ``case``'s patient; the cards spinecds answered (JSON)."""
    resources = load_json(CASES_DIR / f"{case}.json")["resources"]
    patient_id = next(r["id"] for r in resources if r["resourceType"] == "Patient")
    with page.expect_response(lambda r: r.url.endswith("/cds-services/spine-metastasis-review")) as answer:
        page.goto(world.url(patient_id))
    assert answer.value.status == 200, answer.value.text()
    cards: list[dict[str, Any]] = answer.value.json()["cards"]
    page.wait_for_selector(CARD)
    return cards


def shown(page: Any) -> list[tuple[str, str]]:
    """(indicator, summary) of each card the Sandbox renders, in order."""
    out = []
    for card in page.query_selector_all(CARD):
        classes = card.get_attribute("class") or ""
        indicator = next(i for i in ("critical", "warning", "info") if f"card-list__alert-{i}" in classes)
        out.append((indicator, card.inner_text().split("\n", 1)[0].strip()))
    return out


def test_spinal_metastasis_patient_shows_its_cards(page: Any, world: World) -> None:
    cards = open_patient(page, world, METASTASIS)
    page.wait_for_function(f"document.querySelectorAll('{CARD}').length === {len(cards)}")
    # the Sandbox shows cards by severity (critical, warning, info), in the service's order within each
    by_severity = sorted(cards, key=lambda c: SEVERITY.index(c["indicator"]))
    assert shown(page) == [(c["indicator"], c["summary"]) for c in by_severity], "every card, as answered"
    groups = {c["extension"]["org.spinecds.trace"]["card"]: c for c in cards}
    assert {"va-eligibility", "rt-palliative"} <= set(groups)
    assert "emergency-mscc" not in groups
    va = groups["va-eligibility"]
    assert "VA-22" in va["extension"]["org.spinecds.trace"]["rules"]
    card = page.locator(CARD, has_text=va["summary"])
    assert card.count() == 1 and card.is_visible()
    assert va["source"]["label"].strip() in card.inner_text(), "the card cites its source"


def test_cord_compression_patient_shows_the_critical_card_first(page: Any, world: World) -> None:
    cards = open_patient(page, world, CORD_COMPRESSION)
    rendered = shown(page)
    assert rendered[0][0] == "critical"
    assert rendered[0][1] == cards[0]["summary"] and cards[0]["extension"]["org.spinecds.trace"]["card"] == (
        "emergency-mscc"
    )
    assert [i for i, _ in rendered].count("critical") == 1
    assert not {"va-eligibility", "rt-palliative"} & {c["extension"]["org.spinecds.trace"]["card"] for c in cards}


def test_rx_view_with_a_medication_draft_shows_the_emergency(page: Any, world: World) -> None:
    open_patient(page, world, CORD_COMPRESSION)
    page.get_by_text("Rx View", exact=True).first.click()
    page.wait_for_selector('input[name="medication-input"]')
    page.fill('input[name="medication-input"]', "Aspirin 81")
    with page.expect_response(
        lambda r: (
            r.url.endswith("/cds-services/spine-procedure-order-select")
            and "MedicationRequest" in (r.request.post_data or "")
        )
    ) as answer:
        page.get_by_role("button", name="Aspirin 81 MG Oral Tablet").first.click()
    assert answer.value.status == 200
    body = json.loads(answer.value.request.post_data)
    drafts = [e["resource"]["resourceType"] for e in body["context"]["draftOrders"]["entry"]]
    assert drafts == ["MedicationRequest"], "the Sandbox sent a MedicationRequest draft"
    cards = answer.value.json()["cards"]
    assert cards and cards[0]["indicator"] == "critical", cards
    page.wait_for_selector(f'{CARD}[class*="card-list__alert-critical"]', timeout=10_000)
    assert shown(page)[0][0] == "critical"


def test_accept_dismiss_and_override_reach_the_database(page: Any, world: World) -> None:
    before = len(world.feedback())
    cards = open_patient(page, world, METASTASIS)
    page.wait_for_function(f"document.querySelectorAll('{CARD}').length === {len(cards)}")

    def rendered(card: dict[str, Any]) -> Any:
        return page.locator(CARD, has_text=card["summary"])

    suggested = next(c for c in cards if c.get("suggestions"))
    others = [c for c in cards if c is not suggested]
    dismissed, overridden = others[0], others[1]

    def feedback_sent() -> Any:
        return page.expect_response(lambda r: r.url.endswith("/feedback") and r.request.method == "POST")

    with feedback_sent() as dismissed_answer:  # dismiss without a reason
        rendered(dismissed).get_by_role("button", name="Dismiss", exact=True).click()
    with feedback_sent() as overridden_answer:  # dismiss with one of the card's override reasons
        rendered(overridden).get_by_role("button", name="select dismiss reason").click()
        page.get_by_role("menuitem", name=overridden["overrideReasons"][0]["display"]).click()
    with feedback_sent() as accepted_answer:  # accept last: taking a suggestion makes the Sandbox call again
        label = suggested["suggestions"][0]["label"]
        rendered(suggested).get_by_role("button", name=label).click()
    for answer in (accepted_answer, dismissed_answer, overridden_answer):
        assert answer.value.status == 200, answer.value.text()

    stored = {row["card_uuid"]: row for row in world.feedback()[before:]}
    assert set(stored) == {suggested["uuid"], dismissed["uuid"], overridden["uuid"]}
    accepted = stored[suggested["uuid"]]
    assert accepted["outcome"] == "accepted"
    assert accepted["accepted_suggestions"] == [suggested["suggestions"][0]["uuid"]], accepted
    assert stored[dismissed["uuid"]]["outcome"] == "overridden"
    assert stored[overridden["uuid"]]["outcome"] == "overridden"
    assert stored[overridden["uuid"]]["override_code"] == overridden["overrideReasons"][0]["code"]
    assert all(row["card_group"] for row in stored.values()), "feedback joins the issued card"
    assert all(row["service_id"] == "spine-metastasis-review" for row in stored.values())
