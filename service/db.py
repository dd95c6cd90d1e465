"""Storage (SQLAlchemy): SQLite by default, PostgreSQL through SPINECDS_DATABASE_URL."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import JSON, BigInteger, DateTime, Integer, String, Text, create_engine, event, inspect
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker


class Base(DeclarativeBase):
    pass


class FeedbackItem(Base):
    """One feedback entry as the EHR sent it (no patient data: card/suggestion ids, outcome, reason)."""

    __tablename__ = "feedback"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    service_id: Mapped[str] = mapped_column(String(100), index=True)
    card_uuid: Mapped[str] = mapped_column(String(100), index=True)
    outcome: Mapped[str] = mapped_column(String(20))
    outcome_timestamp: Mapped[str] = mapped_column(String(40))
    accepted_suggestions: Mapped[list[str]] = mapped_column(JSON, default=list)
    override_code: Mapped[str | None] = mapped_column(String(200), nullable=True)
    override_system: Mapped[str | None] = mapped_column(String(300), nullable=True)
    override_comment: Mapped[str | None] = mapped_column(Text, nullable=True)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=lambda: datetime.now(UTC))


class IssuedCard(Base):
    """The trace of every card issued (rule IDs, indicator), so feedback can be tied to rules."""

    __tablename__ = "issued_card"
    card_uuid: Mapped[str] = mapped_column(String(100), primary_key=True)
    service_id: Mapped[str] = mapped_column(String(100), index=True)
    hook_instance: Mapped[str] = mapped_column(String(256))
    card_group: Mapped[str] = mapped_column(String(100))
    indicator: Mapped[str] = mapped_column(String(20))
    rules: Mapped[list[str]] = mapped_column(JSON)
    rule_base: Mapped[str] = mapped_column(String(40))
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=lambda: datetime.now(UTC))


class UsedJti(Base):
    """JWT ids already accepted (service.auth.replay): a replay is refused by every instance sharing the
    database. Rows are kept until the token's expiry (plus leeway), then purged."""

    __tablename__ = "used_jti"
    iss: Mapped[str] = mapped_column(String(512), primary_key=True)
    jti: Mapped[str] = mapped_column(String(256), primary_key=True)
    expires_at: Mapped[int] = mapped_column(BigInteger, index=True)  # seconds since the epoch


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


def init_db(engine: Engine) -> sessionmaker:  # type: ignore[type-arg]
    # A database under migrations (alembic_version present: production, `spinecds migrate`) is never
    # altered by the app; any other (development, tests) gets its tables from the models.
    if not inspect(engine).has_table("alembic_version"):
        Base.metadata.create_all(engine)
    return sessionmaker(engine, expire_on_commit=False)
