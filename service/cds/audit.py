"""The issued-card audit (``issued_card`` rows), written beside the answer, never in its way.

Cards are the answer; the audit row only ties later feedback to rules. A write is handed to a
small per-process writer and the request waits for it at most ``WAIT_SECONDS`` (it normally takes
milliseconds, so rows are in the database when the answer leaves). When the database hangs or
is down the answer goes out anyway: a write still running finishes or fails on its own (bounded
by the database timeout), and while writes fail or too many are pending new ones are skipped.
Every row not written is counted in ``spinecds_issued_card_audit_missed_total`` and logged
without patient data (counts and the error class only).

On SQLite the audit's commits do not wait for the disk (``service.db.make_audit_engine``), and the
writer checkpoints the write-ahead log itself every ``CHECKPOINT_EVERY`` writes, after the insert
the answer waited for, so no answer waits for an fsync.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from sqlalchemy import insert, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from service.db import issued_cards
from service.ops import metrics

log = logging.getLogger("spinecds.audit")

WAIT_SECONDS = 1.0  # longest a service call waits for its audit write
MAX_PENDING = 8  # writes queued or running in this process before new ones are skipped
PAUSE_AFTER_FAILURE_SECONDS = 5.0  # writes skipped after a failed one (the database is likely out)
CHECKPOINT_EVERY = 200  # SQLite: audit writes between two WAL checkpoints (a few pages each; the log stays < 4 MB)


class CardAudit:
    def __init__(self, db: Engine, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._db = db
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._pending = 0
        self._paused_until = 0.0
        self._executor: ThreadPoolExecutor | None = None
        self._owner_pid: int | None = None
        self._writes = 0

    @property
    def engine(self) -> Engine:
        return self._db

    def record(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        with self._lock:
            skip = self._pending >= MAX_PENDING or self._monotonic() < self._paused_until
            if not skip:
                self._pending += 1
                executor = self._writer()
        if skip:
            self.missed("skipped", len(rows), "database failing or writes backed up")
            return
        future = executor.submit(self._write, rows)
        with contextlib.suppress(FutureTimeout):  # still running: it completes or counts its misses itself
            future.result(timeout=WAIT_SECONDS)

    def _writer(self) -> ThreadPoolExecutor:
        # one executor per process: threads do not survive gunicorn's fork of the preloaded app
        if self._executor is None or self._owner_pid != os.getpid():
            if self._owner_pid is not None:  # forked: connections opened by the parent are not ours
                self._db.dispose(close=False)
            self._executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="card-audit")
            self._owner_pid = os.getpid()
        return self._executor

    def _write(self, rows: list[dict[str, Any]]) -> None:
        try:
            with self._db.begin() as conn:  # one executemany insert
                conn.execute(insert(issued_cards), rows)
            with self._lock:
                self._writes += 1
                checkpoint = self._db.dialect.name == "sqlite" and self._writes % CHECKPOINT_EVERY == 0
            if checkpoint:
                self._writer().submit(self._checkpoint)  # runs after this write returns to the waiting answer
        except SQLAlchemyError as exc:
            with self._lock:
                self._paused_until = self._monotonic() + PAUSE_AFTER_FAILURE_SECONDS
            self.missed("failed", len(rows), type(exc).__name__)
        finally:
            with self._lock:
                self._pending -= 1

    def _checkpoint(self) -> None:
        """Copy the write-ahead log into the database (PASSIVE: never waits for readers or writers)."""
        try:
            with self._db.connect() as conn:
                conn.execute(text("PRAGMA wal_checkpoint(PASSIVE)"))
        except SQLAlchemyError as exc:
            log.warning("issued-card audit: WAL checkpoint failed (%s)", type(exc).__name__)

    @staticmethod
    def missed(reason: str, count: int, why: str) -> None:
        """Count and log rows not written; ``reason`` is ``unreachable``, ``skipped`` or ``failed``."""
        metrics.issued_card_audit_missed(reason, count)
        log.warning("issued-card audit: %d row(s) not recorded (%s: %s); the cards were answered", count, reason, why)
