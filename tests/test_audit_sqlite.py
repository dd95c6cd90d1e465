"""On SQLite the issued-card audit does not wait for the disk, feedback does (``service.db.make_audit_engine``).

Every answer waits for its audit insert (``service/cds/audit.py``); with ``synchronous=FULL`` each one
waited for an fsync, and the slow fsyncs (100-700 ms) were the answers' tail. Accepted feedback is
still committed with ``FULL`` before its 200, and the audit checkpoints its write-ahead log itself.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text

from service.app import create_app
from service.cds import audit as audit_module
from service.db import issued_cards

FULL, NORMAL = 2, 1


def _app(tmp_path: Path) -> Any:
    return create_app({"database_url": f"sqlite:///{tmp_path / 'spinecds.db'}", "log_level": "WARNING"})


def _rows(n: int = 5) -> list[dict[str, Any]]:
    return [
        {
            "card_uuid": str(uuid.uuid4()),
            "service_id": "spine-metastasis-review",
            "hook_instance": str(uuid.uuid4()),
            "card_group": "augmentation",
            "indicator": "info",
            "rules": ["VA-01", "VA-02"],
            "rule_base": "0" * 12,
        }
        for _ in range(n)
    ]


def _synchronous(engine: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("PRAGMA synchronous")).scalar_one())


def test_feedback_commits_wait_for_the_disk_and_audit_commits_do_not(tmp_path: Path) -> None:
    state = _app(tmp_path).extensions["spinecds"]
    assert state.audit.engine is not state.db
    assert _synchronous(state.db) == FULL  # feedback, replay ids, schema
    assert _synchronous(state.audit.engine) == NORMAL
    rows = _rows()
    state.audit.record(rows)
    with state.db.connect() as conn:  # written when record returns, visible to the feedback side
        assert conn.execute(select(func.count()).select_from(issued_cards)).scalar_one() == len(rows)


def test_in_memory_databases_share_one_engine() -> None:
    state = create_app({"database_url": "sqlite:///:memory:", "log_level": "WARNING"}).extensions["spinecds"]
    assert state.audit.engine is state.db


def test_the_audit_checkpoints_its_write_ahead_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit_module, "CHECKPOINT_EVERY", 5)
    state = _app(tmp_path).extensions["spinecds"]
    wal = tmp_path / "spinecds.db-wal"

    def write(n: int) -> None:
        for _ in range(n):
            state.audit.record(_rows(20))
            time.sleep(0.01)  # the checkpoint runs after the insert the call waited for

    write(10)
    early = wal.stat().st_size
    write(100)
    # the log restarts after checkpoints: ~3x its early size here; without them it grew ~20x
    assert wal.stat().st_size < 5 * early, (early, wal.stat().st_size)
    with state.db.connect() as conn:
        assert conn.execute(select(func.count()).select_from(issued_cards)).scalar_one() == 110 * 20
