"""The backup and restore commands of docs/deployment.md §6, run as written on a private PostgreSQL
cluster: dump a migrated database holding feedback, restore into a freshly migrated one, same rows."""

from __future__ import annotations

import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from conftest import ROOT
from sqlalchemy import create_engine, func, insert, select, text
from support.gunicorn import spinecds_command
from support.private_pg import private_cluster

from service.db import feedback_items, issued_cards

DOCS = ROOT / "docs" / "deployment.md"


def documented(program: str) -> str:
    """The documented command line of ``program`` (continuations joined)."""
    text_ = re.sub(r"\\\n\s*", "", DOCS.read_text(encoding="utf-8"))
    (line,) = [ln.split("   #")[0].strip() for ln in text_.splitlines() if ln.startswith(program + " ")]
    return line


def migrate(url: str) -> None:
    run = subprocess.run(
        [*spinecds_command(), "migrate"],
        env={"PATH": "/usr/bin:/bin", "SPINECDS_DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr


def test_documented_dump_and_restore_round_trip(tmp_path: Path) -> None:
    with private_cluster() as pg:
        source = pg.url
        target = source.rsplit("/", 1)[0] + "/restored"
        migrate(source)
        now = datetime.now(UTC)
        with create_engine(source).begin() as db:
            db.execute(
                insert(issued_cards),
                [
                    {
                        "card_uuid": f"c{i}",
                        "service_id": "spine-metastasis-review",
                        "hook_instance": "h",
                        "card_group": "va-eligibility",
                        "indicator": "info",
                        "rules": ["VA-22"],
                        "rule_base": "x",
                        "issued_at": now,
                    }
                    for i in range(3)
                ],
            )
            db.execute(
                insert(feedback_items),
                [
                    {
                        "service_id": "spine-metastasis-review",
                        "card_uuid": f"c{i}",
                        "outcome": "accepted",
                        "outcome_timestamp": now.isoformat(),
                        "accepted_suggestions": [],
                        "received_at": now,
                    }
                    for i in range(3)
                ],
            )
        admin = create_engine(source, isolation_level="AUTOCOMMIT")
        with admin.connect() as db:
            db.execute(text("CREATE DATABASE restored"))
        admin.dispose()
        migrate(target)
        libpq = {url: url.replace("postgresql+psycopg2://", "postgresql://") for url in (source, target)}
        dump = documented("pg_dump").replace('"postgresql://spinecds@db.internal/spinecds"', f'"{libpq[source]}"')
        restore = documented("pg_restore").replace("--dbname=...", f'--dbname="{libpq[target]}"')
        restore = restore.replace("spinecds-YYYY-MM-DD.dump", "spinecds-$(date +%F).dump")
        for command in (dump, restore):
            run = subprocess.run(command, shell=True, cwd=tmp_path, capture_output=True, text=True, timeout=120)
            assert run.returncode == 0, f"{command}\n{run.stderr}"
        with create_engine(target).connect() as db:
            assert db.execute(select(func.count()).select_from(feedback_items)).scalar() == 3
            assert db.execute(select(func.count()).select_from(issued_cards)).scalar() == 3
