"""What the app holds for its lifetime: compiled rules, vocabulary, storage."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import Engine as SqlEngine

from service.cds.pipeline import Pipeline
from service.config import Settings


@dataclass
class AppState:
    settings: Settings
    pipeline: Pipeline
    db: SqlEngine
