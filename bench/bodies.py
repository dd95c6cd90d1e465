"""Benchmark request bodies: CDS Hooks requests with small, typical and large prefetch.

Every scenario starts from a patient case of ``tests/cases`` (mCODE-style spinal-metastasis data,
so the rules fire) and pads it with other FHIR data:

- ``small``     the case plus a few Synthea resources, ~20 resources in all
- ``typical``   the case plus a stratified sample of a Synthea bundle, ~300 resources
- ``synthea-*`` the case plus *every* resource of one bundle of
                ../shared/fixtures/fhir_data_pipes_synthea_large (1,300-1,400 resources)
- ``obs-5000``  the case plus 5,000 generated Observations (a long-followed patient)
- ``relevant-N`` / ``irrelevant-N`` (the growth curves, N = 500, 2,000, 5,000, 20,000): the case plus
                N generated Observations the rules read (platelets, INR, PT, aPTT, pain scores over
                time: the shape of an oncology chart) or N they do not read (vital signs, other labs)

The request is built by the service's one request builder (``service/cds/request_builder.py``): resources go
into the prefetch key whose template selects them (type and template codes), as an EHR would answer the
templates; what no template asks for (Encounter, Claim, vital signs, ...) goes into the extra key ``other``, as an
EHR that sends its whole chart would. The case's dates are moved by (now - CASE_NOW)
(``service/fhir/date_shift.py``) so its "within 7 days" data stays recent for a server running on the real clock.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from service.cds.request_builder import case_request
from service.fhir.date_shift import shift_dates

ROOT = Path(__file__).resolve().parent.parent
CASES_DIR = ROOT / "tests" / "cases"
SYNTHEA_DIR = ROOT.parent / "shared" / "fixtures" / "fhir_data_pipes_synthea_large"
# the instant the patient cases are written against (tests/conftest.py CASE_NOW)
CASE_NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
LOINC = "http://loinc.org"
DEFAULT_CASE = "cat-rt-02-va-31-worked-example"
# cases that make up the "mixed" load of the memory run (all three hooks, many rule paths)
MIXED_CASES = [
    "cat-rt-02-va-31-worked-example",
    "core-emergency-overrides-eligible",
    "cat-neu-02-escc-high",
    "core-va08-thrombocytopenia-uncorrectable",
    "cat-sup-02-03-severe-on-step1",
    "core-order-sign-vertebroplasty-eligible",
    "cat-rt-13-14-rt-order",
    "cat-va-26-27-32-kypho-order",
    "core-md03-warfarin-stale-labs",
    "cat-rt-10-reirradiation",
]


@dataclass(frozen=True)
class BenchRequest:
    name: str
    service: str
    body: dict[str, Any]
    resources: int

    @property
    def path(self) -> str:
        return f"/cds-services/{self.service}"

    def encoded(self) -> bytes:
        return json.dumps(self.body, separators=(",", ":")).encode()


def load_case(name: str) -> dict[str, Any]:
    case: dict[str, Any] = json.loads((CASES_DIR / f"{name}.json").read_text(encoding="utf-8"))
    return case


def synthea_bundles() -> list[Path]:
    return sorted(SYNTHEA_DIR.glob("*.json"))


def synthea_resources(path: Path) -> list[dict[str, Any]]:
    bundle = json.loads(path.read_text(encoding="utf-8"))
    return [e["resource"] for e in bundle.get("entry", []) if e["resource"]["resourceType"] != "Patient"]


def sample(resources: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """``n`` resources spread evenly over the bundle, so the types keep their proportions."""
    if n >= len(resources):
        return list(resources)
    step = len(resources) / n
    return [resources[int(i * step)] for i in range(n)]


CURVE_SIZES = (500, 2000, 5000, 20000)
CURVES = {"relevant": 1.0, "irrelevant": 0.0}  # share of the generated Observations the rules read


def generated_observations(
    n: int, patient_id: str, before: datetime, seed: int = 7, relevant: float = 1 / 3
) -> list[dict[str, Any]]:
    """``n`` final Observations of a long-followed patient, all older than ``before`` - 30 days.

    A share ``relevant`` (default a third) are in the codes our ``labs``/``ps_pain`` templates ask for
    (platelets, INR, PT, aPTT, pain scores), the rest are vital signs and other labs a chart holds in
    the thousands.
    """
    rng = random.Random(seed)
    ours = [("777-3", "10*3/uL", 150, 400), ("6301-6", "{INR}", 0.9, 1.3), ("5902-2", "s", 11, 14),
            ("3173-2", "s", 25, 35), ("72514-3", "{score}", 0, 4)]  # fmt: skip
    others = [("8867-4", "/min", 55, 100), ("8480-6", "mm[Hg]", 100, 150), ("8462-4", "mm[Hg]", 60, 95),
              ("2339-0", "mg/dL", 70, 140), ("718-7", "g/dL", 11, 16), ("2160-0", "mg/dL", 0.6, 1.3),
              ("29463-7", "kg", 55, 90), ("8310-5", "Cel", 36.2, 37.8), ("59408-5", "%", 93, 100),
              ("6690-2", "10*3/uL", 4, 11)]  # fmt: skip
    out = []
    for i in range(n):
        code, unit, low, high = rng.choice(ours) if _is_relevant(i, relevant) else rng.choice(others)
        when = before - timedelta(days=30 + i // 3, minutes=rng.randrange(1440))
        out.append(
            {
                "resourceType": "Observation",
                "id": f"gen-{i}",
                "status": "final",
                "category": [
                    {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                "code": "vital-signs" if code in {"8867-4", "8480-6", "8462-4"} else "laboratory",
                            }
                        ]
                    }
                ],
                "code": {"coding": [{"system": LOINC, "code": code}]},
                "subject": {"reference": f"Patient/{patient_id}"},
                "effectiveDateTime": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "valueQuantity": {
                    "value": round(rng.uniform(low, high), 1),
                    "unit": unit,
                    "system": "http://unitsofmeasure.org",
                    "code": unit,
                },
            }
        )
    return out


def _is_relevant(i: int, share: float) -> bool:
    """Spread evenly: a share of 1/3 makes every third one relevant (0, 3, 6, ...)."""
    return share > 0 and int(i * share) != int((i - 1) * share) if i else share > 0


def _as_chart_of(padding: list[dict[str, Any]], patient_id: str) -> list[dict[str, Any]]:
    """The padding as the case patient's own chart: only the context patient's data count (the service
    sets another patient's resources aside), so Synthea's ``subject``/``patient`` point at the case patient."""
    out = []
    for resource in padding:
        refs = {k: {"reference": f"Patient/{patient_id}"} for k in ("subject", "patient") if k in resource}
        out.append({**resource, **refs} if refs else resource)
    return out


def build(name: str, case: dict[str, Any], padding: list[dict[str, Any]], now: datetime | None = None) -> BenchRequest:
    """The request of ``case`` plus ``padding``; case dates moved to ``now`` (default: the real clock)."""
    days = ((now or datetime.now(UTC)).date() - CASE_NOW.date()).days
    shifted: dict[str, Any] = shift_dates(case, days)
    patient = next(r for r in shifted["resources"] if r["resourceType"] == "Patient")
    resources = [*shifted["resources"], *_as_chart_of(padding, patient["id"])]
    service, body = case_request(
        shifted,
        user="Practitioner/bench-clinician",
        resources=resources,
        hook_instance=f"00000000-0000-4000-8000-{abs(hash((name, patient['id']))) % 10**12:012d}",
    )
    return BenchRequest(name, service, body, len(resources))


def scenarios(now: datetime | None = None, case_name: str = DEFAULT_CASE) -> list[BenchRequest]:
    """The latency scenarios, smallest first."""
    case = load_case(case_name)
    bundles = synthea_bundles()
    first = synthea_resources(bundles[0])
    n_case = len(case["resources"])
    patient_id = next(r["id"] for r in case["resources"] if r["resourceType"] == "Patient")
    out = [
        build("small", case, sample(first, max(0, 20 - n_case)), now),
        build("typical", case, sample(first, 300 - n_case), now),
    ]
    for path in bundles:
        out.append(build(f"synthea-{path.stem.split('_')[0]}", case, synthea_resources(path), now))
    out.append(build("obs-5000", case, generated_observations(5000, patient_id, now or datetime.now(UTC)), now))
    return out


def curve_scenarios(
    now: datetime | None = None, case_name: str = DEFAULT_CASE, sizes: tuple[int, ...] = CURVE_SIZES
) -> list[BenchRequest]:
    """The growth curves: ``relevant-N`` and ``irrelevant-N`` for each N, smallest first."""
    case = load_case(case_name)
    patient_id = next(r["id"] for r in case["resources"] if r["resourceType"] == "Patient")
    before = now or datetime.now(UTC)
    return [
        build(f"{curve}-{n}", case, generated_observations(n, patient_id, before, relevant=share), now)
        for n in sizes
        for curve, share in CURVES.items()
    ]


def mixed(now: datetime | None = None) -> list[BenchRequest]:
    """Ten cases (all three hooks) at small size, three of them also at typical size: the memory run's load."""
    first = synthea_resources(synthea_bundles()[0])
    out = []
    for i, name in enumerate(MIXED_CASES):
        case = load_case(name)
        out.append(build(f"{name}/small", case, sample(first, max(0, 20 - len(case["resources"]))), now))
        if i % 4 == 0:
            out.append(build(f"{name}/typical", case, sample(first, 300 - len(case["resources"])), now))
    return out
