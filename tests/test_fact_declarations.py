"""rules/facts.yaml declares the ValueSets each fact is read from (docs/fact-sources.md and `spinecds coverage`
are generated from it), so the declaration must say what the extractor really reads.

The extractor is run on every patient case of both suites with a recorder on the vocabulary: every ValueSet
an extractor looks a code up in must be declared by one of the facts (a ValueSet read nowhere in the
declarations would be missing from the coverage report and the fact reference), and every declared ValueSet
must be read by some extractor (a stale declaration).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from support.cases import CASES_DIR, STANDARD_CASES_DIR, build_request, load_cases

import service.facts.extract as extract
from service.batch.coverage import LOCAL_FINDING_VALUESET, facts_by_valueset
from service.cds.assemble import build_pipeline, load_rules
from service.cds.definitions import SERVICES
from service.cds.request import parse_hook_request
from service.config import Settings

LEVEL_VALUESETS = {"vertebral-levels"}  # read through Vocabulary.level_of (a code -> its level), not a lookup


@pytest.fixture(scope="module")
def reads(monkeypatch_module: pytest.MonkeyPatch) -> dict[str, set[str]]:
    """ValueSet ids each extractor looked codes up in, over every case."""
    found: dict[str, set[str]] = {}

    def recording(fn: Any) -> Any:
        def run(inp: extract.ExtractionInput) -> Any:
            before = set(inp.vocab.used)
            inp.vocab.used.clear()
            try:
                return fn(inp)
            finally:
                found.setdefault(fn.__name__, set()).update(inp.vocab.used)
                inp.vocab.used |= before

        return run

    monkeypatch_module.setattr(extract, "_ORDERED", [recording(fn) for fn in extract._ORDERED])
    pipeline = build_pipeline(Settings.from_env(), offline=True)
    evaluated = 0
    for directory in (CASES_DIR, STANDARD_CASES_DIR):
        for _name, case in load_cases(directory):
            if "status" in case.get("expect", {}):
                continue  # error cases never reach the extractor
            service, body = build_request(case)
            try:
                pipeline.run(parse_hook_request(body, SERVICES[service]))
            except Exception:  # noqa: BLE001 - a case that stops before extraction adds nothing
                continue
            evaluated += 1
    assert evaluated > 250, f"only {evaluated} cases reached the extractor"
    return found


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def test_every_valueset_an_extractor_reads_is_declared(reads: dict[str, set[str]]) -> None:
    declared = set(facts_by_valueset(load_rules(Settings.from_env()).facts))
    undeclared = {fn: sorted(vs - declared) for fn, vs in reads.items() if vs - declared}
    assert undeclared == {}, "ValueSets read but declared by no fact in rules/facts.yaml (add them to its sources)"


def test_every_declared_valueset_is_read(reads: dict[str, set[str]]) -> None:
    read = set().union(*reads.values()) | LEVEL_VALUESETS
    declared = facts_by_valueset(load_rules(Settings.from_env()).facts)
    local = {LOCAL_FINDING_VALUESET}  # local codes are read by code (observations_with_local_code)
    stale = sorted(set(declared) - read - local)
    assert stale == [], "ValueSets declared in rules/facts.yaml that no extractor reads on any case"
