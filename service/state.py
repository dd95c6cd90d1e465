"""What the app holds for its lifetime: compiled rules, vocabulary, storage."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import Engine as SqlEngine

from service.cds.audit import CardAudit
from service.cds.pipeline import Pipeline
from service.config import Settings
from service.db import SchemaSetup


@dataclass
class AppState:
    settings: Settings
    pipeline: Pipeline
    db: SqlEngine
    schema: SchemaSetup  # tables created once the database is reachable (retried with back-off)
    audit: CardAudit
