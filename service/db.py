"""Storage (SQLAlchemy): SQLite by default, PostgreSQL through SPINECDS_DATABASE_URL."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

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

# SQLAlchemy Core only: three plain tables need no ORM (whose import alone cost ~0.12 s of every start)
metadata = MetaData()


def _now() -> datetime:
    return datetime.now(UTC)


# One feedback entry as the EHR sent it (no patient data: card/suggestion ids, outcome, reason).
feedback_items = Table(
    "feedback",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("service_id", String(100), nullable=False, index=True),
    Column("card_uuid", String(100), nullable=False, index=True),
    Column("outcome", String(20), nullable=False),
    Column("outcome_timestamp", String(40), nullable=False),
    Column("accepted_suggestions", JSON, nullable=False, default=list),
    Column("override_code", String(200), nullable=True),
    Column("override_system", String(300), nullable=True),
    Column("override_comment", Text, nullable=True),
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


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///")
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 15})

        @event.listens_for(engine, "connect")
        def _pragmas(conn, _record):  # type: ignore[no-untyped-def]
            cur = conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)


def init_db(engine: Engine) -> None:
    # A database under migrations (alembic_version present: production, `spinecds migrate`) is never
    # altered by the app; any other (development, tests) gets its tables from the metadata.
    if not inspect(engine).has_table("alembic_version"):
        metadata.create_all(engine)
