"""Sample patients shipped with the console (``samples/index.json``; origins in ``samples/SOURCES.md``)."""

from __future__ import annotations

import json
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from service.fhir.date_shift import shift_dates

SAMPLES_DIR = Path(__file__).resolve().parent / "samples"


@cache
def sample_index() -> list[dict[str, Any]]:
    data = json.loads((SAMPLES_DIR / "index.json").read_text(encoding="utf-8"))
    return list(data["samples"])


def sample_entry(sample_id: str) -> dict[str, Any] | None:
    return next((s for s in sample_index() if s["id"] == sample_id), None)


def load_sample(entry: dict[str, Any], now: datetime) -> Any:
    """The sample's data with every date moved so that its reference instant falls on ``now``'s day."""
    data = json.loads((SAMPLES_DIR / entry["file"]).read_text(encoding="utf-8"))
    reference = entry.get("referenceInstant")
    if not reference:
        return data
    days = (now.date() - datetime.fromisoformat(reference.replace("Z", "+00:00")).date()).days
    return shift_dates(data, days) if days else data


# Samples taken from the project's patient cases (index.json "case") are generated from them, never edited by
# hand: `python -m service.console.samples --write` (in the repository: the image ships no tests/).
CASES_DIR = Path(__file__).resolve().parents[2] / "tests" / "cases"
SAMPLE_KEYS = ("description", "hook", "resources", "draft_orders", "missing_keys", "null_keys")  # what a record holds
# test-only ways of sending a case (tests/cases/README.md): a sample built without them would not show the case
TEST_ONLY_KEYS = ("settings", "other_patient_resources", "unreadable_resources", "paginated_keys", "prefetch_override")


def render_case_sample(case: dict[str, Any]) -> str:
    """The sample file of a patient case: the record as the console reads it, without the test's expectations."""
    used = [key for key in TEST_ONLY_KEYS if key in case]
    if used:
        raise ValueError(f"a case sent with {', '.join(used)} cannot be a console sample")
    return json.dumps({k: case[k] for k in SAMPLE_KEYS if k in case}, indent=1, ensure_ascii=False) + "\n"


def generated_samples(cases_dir: Path = CASES_DIR) -> dict[str, str]:
    """File name -> content of every sample that comes from a case, as the cases are now."""
    out = {}
    for entry in sample_index():
        if entry.get("case"):
            case = json.loads((cases_dir / f"{entry['case']}.json").read_text(encoding="utf-8"))
            if entry["hook"] != case.get("hook", "patient-view"):
                raise ValueError(f"index.json {entry['id']}: hook {entry['hook']} is not the case's")
            out[entry["file"]] = render_case_sample(case)
    return out


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m service.console.samples", description=main.__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 when a sample differs from its case")
    parser.add_argument("--cases", type=Path, default=CASES_DIR, help="the patient cases (default: tests/cases)")
    args = parser.parse_args(argv)
    stale = []
    for name, text in generated_samples(args.cases).items():
        path = SAMPLES_DIR / name
        if path.is_file() and path.read_text(encoding="utf-8") == text:
            continue
        stale.append(name)
        if not args.check:
            path.write_text(text, encoding="utf-8")
    verb = "stale" if args.check else "written"
    print(f"{verb}: {', '.join(stale)}" if stale else "console samples are current")
    return 1 if args.check and stale else 0


main.__doc__ = "Write the console samples that come from patient cases (service/console/samples/index.json)."

if __name__ == "__main__":
    raise SystemExit(main())
