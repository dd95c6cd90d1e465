"""Storage (SQLAlchemy): SQLite by default, PostgreSQL through SPINECDS_DATABASE_URL.

Every wait on the database is bounded by ``SPINECDS_DATABASE_TIMEOUT`` (``make_engine``): a
connection attempt, each statement (client side: a psycopg2 wait callback gives up on a database
that accepted the connection but never answers, e.g. frozen; server side: ``statement_timeout``),
and the wait for a pooled connection. A database that cannot be reached at start does not stop
the service: ``SchemaSetup`` tries again, spaced by back-off, whenever storage or readiness asks.
"""

from __future__ import annotations

import logging
import os
import select
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    inspect,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from service.cds.feedback_limits import (
    MAX_CARD_CHARS,
    MAX_OUTCOME_TIMESTAMP_CHARS,
    MAX_OVERRIDE_CODE_CHARS,
    MAX_OVERRIDE_SYSTEM_CHARS,
)

log = logging.getLogger("spinecds.db")
DEFAULT_TIMEOUT_SECONDS = 3.0

# SQLAlchemy Core only: three plain tables need no ORM (whose import alone cost ~0.12 s of every start)
metadata = MetaData()


def _now() -> datetime:
    return datetime.now(UTC)


# One feedback entry as the EHR sent it (no patient data: card/suggestion ids, outcome, reason); text columns are
# sized by the feedback limits, so what the feedback endpoint accepts fits.
feedback_items = Table(
    "feedback",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("service_id", String(100), nullable=False, index=True),
    Column("card_uuid", String(MAX_CARD_CHARS), nullable=False, index=True),
    Column("outcome", String(20), nullable=False),
    Column("outcome_timestamp", String(MAX_OUTCOME_TIMESTAMP_CHARS), nullable=False),
    Column("accepted_suggestions", JSON, nullable=False, default=list),
    Column("override_code", String(MAX_OVERRIDE_CODE_CHARS), nullable=True),
    Column("override_system", String(MAX_OVERRIDE_SYSTEM_CHARS), nullable=True),
    Column("override_comment", Text, nullable=True),  # at most MAX_USER_COMMENT_CHARS, checked before storing
    Column("received_at", DateTime(timezone=True), nullable=False, default=_now),
)

# The trace of every card issued (rule IDs, indicator), so feedback can be tied to rules.
issued_cards = Table(
    "issued_card",
    metadata,
    Column("card_uuid", String(100), primary_key=True),
    Column("service_id", String(100), nullable=False, index=True),
    Column("hook_instance", String(256), nullable=False),
    Column("card_group", String(100), nullable=False),
    Column("indicator", String(20), nullable=False),
    Column("rules", JSON, nullable=False),
    Column("rule_base", String(40), nullable=False),
    Column("issued_at", DateTime(timezone=True), nullable=False, default=_now),
)

# JWT ids already accepted (service.auth.replay): a replay is refused by every instance sharing the
# database. Rows are kept until the token's expiry (plus leeway), then purged.
used_jtis = Table(
    "used_jti",
    metadata,
    Column("iss", String(512), primary_key=True),
    Column("jti", String(256), primary_key=True),
    Column("expires_at", BigInteger, nullable=False, index=True),  # seconds since the epoch
)


def make_engine(url: str, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> Engine:
    """An engine whose every wait (connect, statement, pool checkout) ends after ``timeout`` seconds."""
    if url.startswith("sqlite:///"):
        return _sqlite_engine(url, timeout, ("PRAGMA synchronous=FULL",))
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=5,
        max_overflow=5,
        pool_timeout=timeout,
        connect_args={
            "connection_factory": _deadline_connection(timeout),
            "options": f"-c statement_timeout={int(timeout * 1000)}",
        },
    )


def make_audit_engine(url: str, timeout: float, shared: Engine) -> Engine:
    """The engine of the issued-card audit (``service/cds/audit.py``); ``shared`` everywhere but SQLite.

    On SQLite the audit has its own connections whose commits do not wait for the disk
    (``synchronous=NORMAL`` in WAL mode: a row survives a crash of the process, not a power loss;
    feedback keeps ``FULL``, and its commit also makes every audit row before it durable) and that
    never checkpoint on their own (``CardAudit`` checkpoints off the request path). Each answer
    waits for its audit insert: an fsync there put 100-700 ms stalls into the answers' tail.
    """
    if not url.startswith("sqlite:///") or url.removeprefix("sqlite:///") in ("", ":memory:"):
        return shared  # (an in-memory database exists once per connection)
    return _sqlite_engine(url, timeout, ("PRAGMA synchronous=NORMAL", "PRAGMA wal_autocheckpoint=0"))


def _sqlite_engine(url: str, timeout: float, pragmas: tuple[str, ...]) -> Engine:
    path = url.removeprefix("sqlite:///")
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": timeout})

    @event.listens_for(engine, "connect")
    def _pragmas(conn, _record):  # type: ignore[no-untyped-def]
        cur = conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        for pragma in pragmas:
            cur.execute(pragma)
        cur.close()

    return engine


def _deadline_connection(timeout: float) -> Any:
    """A psycopg2 connection class whose waits (connect, each query) end after ``timeout`` seconds.

    libpq's own timeouts do not cover a server that accepted the TCP connection and then stopped
    answering (SIGSTOP, a hung host: the kernel still acknowledges every byte). psycopg2 runs every
    operation through a wait callback when one is set; ours polls the socket with this deadline
    and then cuts the socket (``_cut``): psycopg2 raises ``OperationalError``, SQLAlchemy drops the
    connection and callers see ``SQLAlchemyError``. Connections of other classes wait as before.
    """
    import psycopg2.extensions  # type: ignore[import-untyped]

    psycopg2.extensions.set_wait_callback(_wait_with_deadline)
    return type("DeadlineConnection", (psycopg2.extensions.connection,), {"spinecds_timeout": timeout})


def _wait_with_deadline(conn: Any) -> None:
    import psycopg2.extensions as ext

    timeout: float | None = getattr(conn, "spinecds_timeout", None)
    deadline = None if timeout is None else time.monotonic() + timeout
    poller = select.poll()
    fd = conn.fileno()
    while True:
        state = conn.poll()
        if state == ext.POLL_OK:
            return
        flags = select.POLLIN if state == ext.POLL_READ else select.POLLOUT
        poller.register(fd, flags | select.POLLERR | select.POLLHUP)
        if deadline is None:
            poller.poll()
        else:
            left = deadline - time.monotonic()
            if left <= 0:
                _cut(fd)
                log.warning("the database did not answer within %g s; connection dropped", timeout)
                deadline = None  # the next poll() raises psycopg2's own "connection closed" error
                continue
            poller.poll(left * 1000)
        poller.unregister(fd)


def _cut(fd: int) -> None:
    """Shut the socket down under libpq (through a duplicate descriptor: libpq's own stays valid and is
    closed by libpq). The operation then fails at once as a broken connection, which psycopg2 marks
    closed and SQLAlchemy treats as a disconnect: the connection leaves the pool. (``conn.close()``
    cannot be called here: psycopg2 holds the connection's lock while it waits.)"""
    with socket.socket(fileno=os.dup(fd)) as sock:
        sock.shutdown(socket.SHUT_RDWR)


def init_db(engine: Engine) -> None:
    # A database under migrations (alembic_version present: production, `spinecds migrate`) is never
    # altered by the app; any other (development, tests) gets its tables from the metadata.
    if not inspect(engine).has_table("alembic_version"):
        metadata.create_all(engine)


class SchemaSetup:
    """``init_db`` until it succeeds once: a database down at start is retried, not fatal.

    ``ensure()`` is cheap once done; before that each call that finds the next attempt due tries
    again (start, readiness probes, feedback), the gaps doubling from 1 s to ``MAX_BACKOFF_SECONDS``,
    each failure one JSON log line naming the error class (never the URL: it may hold a password).
    """

    MAX_BACKOFF_SECONDS = 16.0

    def __init__(self, engine: Engine, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._engine = engine
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._next_attempt = 0.0
        self._backoff = 1.0
        self.done = False

    def ensure(self) -> bool:
        if self.done:
            return True
        if not self._lock.acquire(blocking=False):
            return False  # another thread is trying right now
        try:
            now = self._monotonic()
            if self.done or now < self._next_attempt:
                return self.done
            try:
                init_db(self._engine)
            except SQLAlchemyError as exc:
                log.warning(
                    "database not reachable (%s); will retry in %.0f s; not ready until then",
                    type(exc).__name__,
                    self._backoff,
                )
                self._next_attempt = now + self._backoff
                self._backoff = min(self._backoff * 2, self.MAX_BACKOFF_SECONDS)
                return False
            if self._next_attempt:
                log.info("database reachable again; storage ready")
            self.done = True
            return True
        finally:
            self._lock.release()
