"""scripts/conformance: one pytest run over the mapped tests, then a per-requirement verdict.

A small pytest plugin keeps only the mapped test items (a mapped id matches itself and its
parametrized instances ``id[...]``), records every outcome, and remembers what was collected so a
mapped id that matches nothing is reported as ``missing`` (a failure).
"""

from __future__ import annotations

import csv
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MAP = ROOT / "tests" / "conformance" / "requirements-map.yaml"
TSV = ROOT.parent / "shared" / "cds-hooks" / "service-requirements.tsv"
PENDING = "PENDING:"


def _matches(nodeid: str, mapped: str) -> bool:
    return nodeid == mapped or nodeid.startswith(mapped + "[")


@dataclass(eq=False)
class Collector:
    mapped: set[str]
    collected: set[str] = field(default_factory=set)
    outcomes: dict[str, str] = field(default_factory=dict)

    def pytest_collection_modifyitems(self, config: Any, items: list[Any]) -> None:
        keep, drop = [], []
        for item in items:
            (keep if any(_matches(item.nodeid, m) for m in self.mapped) else drop).append(item)
        self.collected = {i.nodeid for i in keep}
        if drop:
            config.hook.pytest_deselected(items=drop)
        items[:] = keep

    def pytest_runtest_logreport(self, report: Any) -> None:
        if report.failed:
            self.outcomes[report.nodeid] = "failed"
        elif report.skipped and self.outcomes.get(report.nodeid) != "failed":
            self.outcomes[report.nodeid] = "skipped"
        elif report.when == "call" and report.passed and report.nodeid not in self.outcomes:
            self.outcomes[report.nodeid] = "passed"


def verdict(tests: list[str], collector: Collector) -> tuple[str, str]:
    notes = []
    status = "pass"
    for mapped in tests:
        nodes = [n for n in collector.collected if _matches(n, mapped)]
        if not nodes:
            status, note = "fail", f"missing test {mapped}"
        else:
            results = [collector.outcomes.get(n, "not run") for n in nodes]
            bad = [n for n, r in zip(nodes, results, strict=True) if r != "passed"]
            if bad:
                status = "fail"
                note = f"{len(bad)}/{len(nodes)} not passed: {bad[0]} ({collector.outcomes.get(bad[0], 'not run')})"
            else:
                continue
        notes.append(note)
    return status, "; ".join(notes)


def main(argv: list[str]) -> int:
    mapping: dict[str, dict[str, Any]] = {
        str(k): v for k, v in yaml.safe_load(MAP.read_text(encoding="utf-8"))["requirements"].items()
    }
    with TSV.open(encoding="utf-8") as handle:
        rows = {row["ID"]: row for row in csv.DictReader(handle, delimiter="\t")}
    unmapped = sorted(set(rows) - set(mapping), key=int)
    mapped_ids = {t for entry in mapping.values() for t in entry.get("tests") or []}
    files = sorted({t.split("::", 1)[0] for t in mapped_ids})
    collector = Collector(mapped_ids)
    missing_files = [f for f in files if not (ROOT / f).is_file()]
    code = pytest.main(
        ["-q", "-p", "no:cacheprovider", "--no-header", *[f for f in files if f not in missing_files], *argv],
        plugins=[collector],
    )
    totals = {"pass": 0, "fail": 0, "n.a.": 0, "pending": 0}
    print("\nCDS Hooks 2.0 service requirements (service-requirements.tsv)")
    for rid in sorted(rows, key=int):
        entry = mapping.get(rid, {})
        reason = entry.get("na")
        if rid in unmapped:
            status, note = "fail", "not in requirements-map.yaml"
        elif reason:
            status = "pending" if str(reason).startswith(PENDING) else "n.a."
            note = str(reason)
        else:
            status, note = verdict(entry["tests"], collector)
            if status == "pass":
                note = f"{len(entry['tests'])} test id(s)"
        totals[status] += 1
        print(f"{rid:>4}  {rows[rid]['Conformance']:<10} {status:<8} {note}")
    print(
        f"\ntotal {len(rows)}: {totals['pass']} pass, {totals['fail']} fail, {totals['n.a.']} n.a., "
        f"{totals['pending']} pending  (pytest exit {int(code)})"
    )
    return 1 if totals["fail"] or missing_files else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
