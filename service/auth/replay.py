"""The ``jti`` replay store, in the database so that every instance of the service shares it.

A token's ``(iss, jti)`` is inserted once its signature and claims have been checked; the
primary key makes a second insert fail, on SQLite and PostgreSQL alike, also when two
instances race. Rows expire with the token (``exp`` + leeway) and are purged now and then.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from sqlalchemy import delete, insert
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from service.db import used_jtis

log = logging.getLogger("spinecds.auth")
PURGE_EVERY_SECONDS = 60.0


class ReplayStoreUnavailable(Exception):
    """The database could not be asked: a token cannot be accepted now (503, the client retries)."""


class ReplayStore:
    def __init__(self, db: Engine, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._db = db
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._next_purge = 0.0

    def first_use(self, iss: str, jti: str, expires_at: int, now: float) -> bool:
        """Record the token; False when this ``(iss, jti)`` was seen before (a replay)."""
        try:
            self._purge_if_due(now)
            with self._db.begin() as conn:
                conn.execute(insert(used_jtis).values(iss=iss, jti=jti, expires_at=expires_at))
        except IntegrityError:
            return False
        except SQLAlchemyError as exc:
            raise ReplayStoreUnavailable(type(exc).__name__) from exc
        return True

    def _purge_if_due(self, now: float) -> None:
        with self._lock:
            if self._monotonic() < self._next_purge:
                return
            self._next_purge = self._monotonic() + PURGE_EVERY_SECONDS
        with self._db.begin() as conn:
            result = conn.execute(delete(used_jtis).where(used_jtis.c.expires_at < int(now)))
        removed = getattr(result, "rowcount", 0)
        if removed:
            log.debug("purged %d expired jti(s)", removed)
