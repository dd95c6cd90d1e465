"""Shared fixtures: the app with a fixed clock, the fixture folders, storage backends."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from service.app import create_app  # noqa: E402
from service.engine.ruleset import RuleError  # noqa: E402

SHARED = ROOT.parent / "shared"
FIXTURES = SHARED / "fixtures"
# Patient cases are written against this instant, so their "within 7 days" stays true forever.
CASE_NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def app(tmp_path_factory: pytest.TempPathFactory) -> Any:
    db = tmp_path_factory.mktemp("db") / "spinecds.db"
    try:
        return create_app(
            {
                "database_url": f"sqlite:///{db}",
                "public_base_url": "https://cds.example.org",
                "fhir_connect_timeout": 1.0,
                "fhir_read_timeout": 2.0,
                "fhir_server_allowlist": "127.0.0.1",  # the loopback FHIR server of the fallback tests
            },
            clock=lambda: CASE_NOW,
        )
    except RuleError as exc:  # one clear failure, not one setup error per test
        pytest.exit(f"the rule base is broken (see `spinecds rules --check`): {exc}", returncode=1)


@pytest.fixture()
def client(app: Any) -> Iterator[Any]:
    with app.test_client() as c:
        yield c
