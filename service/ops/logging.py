"""Structured logs: one JSON object per line, tagged with the request id.

The request id comes from the caller's ``X-Request-Id`` (when it is a short token of safe
characters) or is generated, and is echoed in the response header. Log records never carry
request bodies, FHIR resources, tokens or patient identifiers; exceptions are logged with their
type and stack frames only, because exception messages can quote input data.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import traceback
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

REQUEST_ID_HEADER = "X-Request-Id"
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_request_id: ContextVar[str | None] = ContextVar("spinecds_request_id", default=None)
_HANDLER_MARK = "_spinecds_json"
# Libraries whose DEBUG/INFO lines quote URLs or SQL parameters (FHIR queries carry patient ids):
# held at WARNING whatever SPINECDS_LOG_LEVEL says.
QUIET_LIBRARIES = ("urllib3", "requests", "sqlalchemy", "alembic", "werkzeug", "charset_normalizer")


def request_id_from(header: str | None) -> str:
    """The caller's id when it is a safe token, else a new one."""
    if header and _SAFE_ID.match(header):
        return header
    return uuid.uuid4().hex


def set_request_id(value: str | None) -> None:
    _request_id.set(value)


def current_request_id() -> str | None:
    return _request_id.get()


# Credentials as they can appear in text: an Authorization value, a JWT, a token in a query string
_SECRETS = re.compile(
    r"(?i)\b(bearer|basic|digest|negotiate)\s+[^\s'\",;]+"
    r"|eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*\.?[A-Za-z0-9_-]*"
    r"|\b(access_token|id_token|token|password|client_secret)=[^&\s'\"]+"
)
# gunicorn's own parser warning quotes the offending request line or header line verbatim
_GUNICORN_INVALID = re.compile(r"^(Invalid request from ip=[^:]*: )([^:']*)")


def redact(message: str) -> str:
    """``message`` with anything shaped like a credential replaced by ``[redacted]``."""
    return _SECRETS.sub(_redacted, message)


def _redacted(match: re.Match[str]) -> str:
    if match.group(1):
        return f"{match.group(1)} [redacted]"
    if match.group(2):
        return f"{match.group(2)}=[redacted]"
    return "[redacted]"


def _message(record: logging.LogRecord) -> str:
    message = record.getMessage()
    if record.name.startswith("gunicorn"):
        invalid = _GUNICORN_INVALID.match(message)
        if invalid:  # keep what kind of malformation, never the bytes it quotes (a header line, a token)
            return f"{invalid.group(1)}{invalid.group(2).strip() or 'malformed request'} (detail withheld)"
        if message.startswith("Error handling request "):
            message = message.split("?", 1)[0]  # the query string may carry identifiers or tokens
    return redact(message)


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "msg", "request_id"?, "exc_type"?, "stack"?}`` per line.

    Every message goes through ``redact`` (credential-shaped text), and gunicorn's parser warnings
    lose the request bytes they quote: no log line carries a token, whoever wrote it."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": _message(record),
        }
        request_id = getattr(record, "request_id", None) or current_request_id()
        if request_id:
            entry["request_id"] = request_id
        if record.exc_info and record.exc_info[0] is not None:
            entry["exc_type"] = record.exc_info[0].__name__
            entry["stack"] = "".join(traceback.format_tb(record.exc_info[2])).rstrip()
        return json.dumps(entry, ensure_ascii=False, default=str)


def json_handler(stream: Any = None) -> logging.Handler:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    setattr(handler, _HANDLER_MARK, True)
    return handler


def configure_logging(level: str) -> None:
    """Install one JSON handler on the root logger (idempotent) and set the level."""
    root = logging.getLogger()
    if not any(getattr(h, _HANDLER_MARK, False) for h in root.handlers):
        root.addHandler(json_handler())
    root.setLevel(level.upper())
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.WARNING)


def gunicorn_logconfig(level: str) -> dict[str, Any]:
    """``logconfig_dict`` for gunicorn so its own messages are JSON lines too."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": f"{__name__}.JsonFormatter"}},
        "handlers": {
            "console": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"},
        },
        "root": {"level": level.upper(), "handlers": []},
        "loggers": {
            "gunicorn.error": {"level": "INFO", "handlers": ["console"], "propagate": False},
            # gunicorn's access line would carry client addresses and raw query strings; spinecds.access
            # logs method, route template, status and duration instead
            "gunicorn.access": {"level": "CRITICAL", "handlers": [], "propagate": False},
        },
    }
