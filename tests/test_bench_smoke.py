"""Smoke test of the benchmark harness (bench/): its requests, its floor and naive servers, its wrk script.

No timing is asserted here; scripts/bench measures. These tests make sure the harness measures
the right thing: requests our service accepts and answers with the rules of the padded case,
a floor that really answers no cards, a naive path that really validates every resource.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from support.cases import fired_rules
from support.cds_checker import check_cards_response, check_hook_request, errors_only
from support.tools import require_executable

from bench import servers
from bench.bodies import CASE_NOW, build, generated_observations, load_case, mixed, scenarios
from bench.load import percentile, write_manifest, wrk
from bench.naive import validate_all
from service.app import create_app
from service.cds.request_builder import EXTRA_KEY, prefetch_key
from service.fhir.date_shift import shift_dates
from service.fhir.pool import ResourcePool

CASE = "cat-rt-02-va-31-worked-example"


@pytest.fixture(scope="module")
def reqs() -> list[Any]:
    return scenarios(now=CASE_NOW)


@pytest.fixture(scope="module")
def floor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.Server]:
    server = servers.start("floor", tmp_path_factory.mktemp("floor"), workers=1, threads=2)
    yield server
    server.stop()


def test_scenario_sizes(reqs: list[Any]) -> None:
    sizes = {r.name: r.resources for r in reqs}
    assert sizes["small"] == 20
    assert sizes["typical"] == 300
    synthea = [n for n in sizes if n.startswith("synthea-")]
    assert len(synthea) == 2 and all(sizes[n] > 1000 for n in synthea)
    assert sizes["obs-5000"] == 5000 + len(load_case(CASE)["resources"])


def test_requests_are_valid_cds_requests(reqs: list[Any]) -> None:
    for req in reqs:
        assert errors_only(check_hook_request(req.body)) == [], req.name


def test_padded_requests_fire_the_case_rules(client: Any, reqs: list[Any]) -> None:
    """Padding with Synthea or generated data leaves the case's decisions as they are."""
    expected = set(load_case(CASE)["expect"]["fire"])
    bare = client.post("/cds-services/spine-metastasis-review", json=build("bare", load_case(CASE), [], CASE_NOW).body)
    assert bare.status_code == 200
    for req in reqs:
        response = client.post(req.path, data=req.encoded(), content_type="application/json")
        assert response.status_code == 200, (req.name, response.get_json())
        doc = response.get_json()
        assert errors_only(check_cards_response(doc, require_uuids=True)) == [], req.name
        fired = fired_rules(doc["cards"])
        assert expected <= fired, (req.name, sorted(expected - fired))
        assert fired == fired_rules(bare.get_json()["cards"]), req.name


def test_mixed_requests_are_answered(client: Any) -> None:
    mix = mixed(now=CASE_NOW)
    assert {r.service for r in mix} >= {"spine-metastasis-review", "spine-procedure-order-sign"}
    for req in mix:
        response = client.post(req.path, data=req.encoded(), content_type="application/json")
        assert response.status_code == 200, (req.name, response.get_json())


def test_date_shift_keeps_decisions_on_a_later_clock(tmp_path: Path) -> None:
    later = CASE_NOW + timedelta(days=181)
    app = create_app({"database_url": f"sqlite:///{tmp_path / 'later.db'}"}, clock=lambda: later)
    case = load_case(CASE)
    with app.test_client() as c:
        shifted = c.post("/cds-services/spine-metastasis-review", json=build("s", case, [], later).body)
        unshifted = c.post("/cds-services/spine-metastasis-review", json=build("u", case, [], CASE_NOW).body)
    assert set(case["expect"]["fire"]) <= fired_rules(shifted.get_json()["cards"])
    # without the shift the case's recent data is half a year old and some rules no longer fire
    assert fired_rules(shifted.get_json()["cards"]) != fired_rules(unshifted.get_json()["cards"])


def test_shift_dates_moves_dates_only() -> None:
    doc = {"a": "2026-06-01", "b": ["2026-05-31T23:10:00Z"], "c": "2026-06-01 is not a date", "d": 2026}
    assert shift_dates(doc, 3) == {"a": "2026-06-04", "b": ["2026-06-03T23:10:00Z"], "c": doc["c"], "d": 2026}


def test_generated_observations_are_valid_r4() -> None:
    obs = generated_observations(300, "p1", CASE_NOW)
    body = {"prefetch": {"labs": {"resourceType": "Bundle", "entry": [{"resource": o} for o in obs]}}}
    assert validate_all(body) == (300, 0)
    assert all(o["effectiveDateTime"] < "2026-05-03" for o in obs)


def test_generated_observations_are_relevant_or_not_as_the_templates_say() -> None:
    """ "relevant-N" pads with Observations the prefetch templates ask for, "irrelevant-N" with ones they do not."""
    relevant = {prefetch_key(o) for o in generated_observations(60, "p1", CASE_NOW, relevant=1.0)}
    assert relevant == {"labs", "ps_pain"}
    assert {prefetch_key(o) for o in generated_observations(60, "p1", CASE_NOW, relevant=0.0)} == {EXTRA_KEY}


def test_naive_validation_rejects_invalid_resources() -> None:
    body = {"prefetch": {"patient": {"resourceType": "Patient", "gender": 7}, "x": {"resourceType": "NoSuchType"}}}
    assert validate_all(body) == (0, 2)


def test_floor_answers_no_cards_under_gunicorn(floor: servers.Server, reqs: list[Any]) -> None:
    small = reqs[0]
    response = requests.post(floor.url + small.path, data=small.encoded(), headers={"Content-Type": "application/json"})
    assert response.status_code == 200
    assert response.json() == {"cards": []}
    bad = requests.post(floor.url + small.path, data=b"{not json", headers={"Content-Type": "application/json"})
    assert bad.status_code == 400
    assert floor.worker_pids() and all(kib > 0 for kib in floor.worker_rss_kib().values())
    large = next(r for r in reqs if len(r.encoded()) > 2 << 20)  # read up to ours' body limit, as ours is
    response = requests.post(floor.url + large.path, data=large.encoded(), headers={"Content-Type": "application/json"})
    assert response.status_code == 200, response.text[:200]


def test_naive_server_validates_every_resource(tmp_path: Path, reqs: list[Any]) -> None:
    server = servers.start("naive", tmp_path, workers=1, threads=1)
    try:
        small = reqs[0]
        response = requests.post(
            server.url + small.path, data=small.encoded(), headers={"Content-Type": "application/json"}
        )
    finally:
        server.stop()
    assert response.json() == {"cards": []}
    assert response.headers["X-Bench-Validated"] == f"{small.resources} valid, 0 invalid"


def test_wrk_script_posts_the_manifest(floor: servers.Server, reqs: list[Any], tmp_path: Path) -> None:
    require_executable("wrk", "wrk")
    manifest = write_manifest(reqs[:2], tmp_path, "smoke")
    result = wrk(floor.url, manifest, connections=2, seconds=1)
    assert result.requests > 0 and result.errors == 0
    limited = wrk(floor.url, manifest, connections=2, seconds=30, limit=50)
    assert limited.requests == 50 and limited.errors == 0 and limited.seconds < 30


def test_wrk_requests_carry_the_host_header(reqs: list[Any], tmp_path: Path) -> None:
    """HTTP/1.1 requires Host; a server other than gunicorn (a peer, a proxy) answers 400 without it."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    hosts: list[str | None] = []

    class Strict(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            hosts.append(self.headers.get("Host"))
            status = 200 if self.headers.get("Host") else 400
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Strict)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        result = wrk(url, write_manifest(reqs[:2], tmp_path, "host"), connections=1, seconds=30, limit=5)
    finally:
        server.shutdown()
    assert result.errors == 0 and hosts and all(h == f"127.0.0.1:{server.server_address[1]}" for h in hosts)


def test_percentile() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile([3.0], 99) == 3.0


def test_the_targets_table_marks_each_figure_against_its_target() -> None:
    from bench.run import balanced, targets_table

    def lat(name: str, resources: int, ours: float, floor: float, naive: float) -> dict[str, Any]:
        return {"scenario": name, "resources": resources, "ours_p50": ours, "floor_p50": floor,
                "ours/floor": ours / floor, "naive/ours": naive / ours}  # fmt: skip

    def wrk_run(load: str, conns: int, ours: float, floor: float, split: list[float]) -> dict[str, Any]:
        return {"load": load, "connections": conns, "ratio": ours / floor, "ours": {"errors": 0},
                "ours_worker_cpu_split": split}  # fmt: skip

    out = {
        "workers": 2,
        "latency": [
            lat("synthea-a", 1314, 80, 40, 500),
            lat("relevant-2000", 2011, 50, 20, 300),
            *(lat(f"irrelevant-{n}", n, n / 100, n / 100, n) for n in (511, 2011, 5011, 20011)),
        ],
        "tail": [{"scenario": "small", "n": 200, "ours": {"tail": 1.8}, "floor": {"tail": 3.0}}],
        "throughput": [
            wrk_run("synthea (both bundles)", 8, 30, 40, [0.52, 0.48]),
            wrk_run("synthea (both bundles)", 32, 20, 40, [1.0, 0.0]),
        ],  # fmt: skip
        "cold_start": {"median": 1.2},
    }
    rows = {line.split(" | ")[0].lstrip("| "): line for line in targets_table(out) if line.startswith("| ")}
    expected = {
        "large Synthea bundles: ours/floor p50 (worst)": "MISSED",  # 2.0 > 1.5
        "relevant-2000: ours/floor p50": "met",  # 2.5
        "relevant-2000: naive/ours p50": "met",  # 6
        "growth exponent, irrelevant-N (511 → 20,011)": "met",  # 1.0
        "tail: ours p99/p50, small, one connection, n=200": "met",
        "throughput ours/floor, Synthea, 8 connections": "met",  # 0.75
        "throughput ours/floor, Synthea, 32 connections": "MISSED",  # 0.5
        "worker balance, synthea (both bundles), 8 connections (CPU share per worker)": "met",
        "worker balance, synthea (both bundles), 32 connections (CPU share per worker)": "MISSED",  # one idle
        "errors under load (ours)": "met",
        "cold start median (spinecds serve to first 200)": "MISSED",
    }
    for label, verdict in expected.items():
        assert rows[label].endswith(f"| {verdict} |"), rows[label]
    assert balanced([0.6, 0.4], 2) and not balanced([0.61, 0.39], 2) and not balanced([1.0], 2)


def test_pipeline_validates_only_what_the_rules_read(app: Any) -> None:
    """The relevance test behind the large-prefetch speed-up: unread codes are not even validated."""
    relevant = app.extensions["spinecds"].pipeline.relevant
    platelets = {"resourceType": "Observation", "code": {"coding": [{"system": "http://loinc.org", "code": "777-3"}]}}
    heart_rate = {"resourceType": "Observation", "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]}}
    assert relevant("Observation", platelets)
    assert not relevant("Observation", heart_rate)
    assert relevant("Condition", {"resourceType": "Condition"})  # other types are kept as they are
    broken = [{**heart_rate, "id": "hr-bad", "status": 42}, {**platelets, "id": "plt-bad", "status": 42}]
    pool = ResourcePool(relevant=relevant)
    pool.add_payload({"resourceType": "Bundle", "entry": [{"resource": r} for r in broken]}, "prefetch.labs")
    # the unread heart rate was never validated; the platelet count was, and was skipped as invalid
    assert pool.irrelevant == {"Observation": 1}
    assert [s.where for s in pool.skipped] == ["prefetch.labs[1]"]
    assert pool.of("Observation") == []
