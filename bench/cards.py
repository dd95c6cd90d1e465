"""Card counts over the patient cases: how many cards a clinician sees per patient-view.

Runs every case of tests/cases (and tests/cases-standard when present) through the service (the
Flask app in-process, the suite's fixed clock) and prints, over the patient-view responses, the
median and maximum number of cards, and whether a critical card is first whenever one is present.
Targets (issue 14): median <= 3, max <= 5, critical first always. Exit status 1 when a target is missed.

    .venv/bin/python -m bench.cards [--list]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from support.cases import build_request  # noqa: E402

from bench.bodies import CASE_NOW  # noqa: E402  (the clock the cases are written against)
from service.app import create_app  # noqa: E402

CASE_DIRS = [ROOT / "tests" / "cases", ROOT / "tests" / "cases-standard"]
MEDIAN_TARGET, MAX_TARGET = 3, 5


def case_files() -> list[Path]:
    return [p for d in CASE_DIRS if d.is_dir() for p in sorted(d.glob("*.json"))]


def run_cases() -> list[tuple[str, str, list[dict[str, Any]]]]:
    """(case name, hook, cards) for every case answered 200."""
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(
            {"database_url": f"sqlite:///{tmp}/cards.db", "public_base_url": "https://cds.example.org"},
            clock=lambda: CASE_NOW,
        )
        out = []
        with app.test_client() as client:
            for path in case_files():
                case = json.loads(path.read_text(encoding="utf-8"))
                service, body = build_request(case)
                response = client.post(f"/cds-services/{service}", json=body)
                if response.status_code == 200:
                    out.append((path.stem, body["hook"], response.get_json()["cards"]))
        return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--list", action="store_true", help="print every patient-view response's cards")
    args = parser.parse_args(argv)
    results = run_cases()
    views = [(name, cards) for name, hook, cards in results if hook == "patient-view"]
    counts = [len(cards) for _, cards in views]
    critical_ok = all(
        cards[0]["indicator"] == "critical" for _, cards in views if any(c["indicator"] == "critical" for c in cards)
    )
    with_critical = sum(1 for _, cards in views if any(c["indicator"] == "critical" for c in cards))
    if args.list:
        for name, cards in views:
            print(f"{name}: {len(cards)}")
            for c in cards:
                print(f"    [{c['indicator']:8}] {c['summary']}")
    median, most = statistics.median(counts), max(counts)
    print(f"patient-view responses: {len(views)} (of {len(results)} cases answered 200)")
    print(f"cards per response: median {median:g} (target <= {MEDIAN_TARGET}), max {most} (target <= {MAX_TARGET})")
    print(f"critical card first when present: {'yes' if critical_ok else 'NO'} ({with_critical} responses with one)")
    ok = median <= MEDIAN_TARGET and most <= MAX_TARGET and critical_ok
    print("targets met" if ok else "targets MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    logging.disable(logging.WARNING)  # the start-up warnings of the app (as a script only: a test imports main)
    raise SystemExit(main())
