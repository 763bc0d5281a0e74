"""JSON logs: one line per record, secrets redacted at any depth, the request id on every line.

A record's `extra` fields become JSON keys. Any key whose name suggests a secret (`password`,
`token`, `authorization`, `cookie`, `secret`, `api_key`, ...) is replaced by `[REDACTED]` wherever
it appears, in nested mappings, in lists and in header lists of pairs.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
import traceback
from collections.abc import Mapping
from typing import Any

REDACTED = "[REDACTED]"
SECRET_KEYS = frozenset(
    {
        "password", "new_password", "current_password", "passwd", "token", "access_token",
        "refresh_token", "id_token", "authorization", "proxy-authorization", "cookie",
        "set-cookie", "secret", "client_secret", "api_key", "apikey", "x-api-key",
        "x-user-token", "private_key", "totp", "recovery_code", "otp",
        "signature", "webhook-signature", "argus-signature", "db_password", "dsn",
    }
)
SECRET_FRAGMENTS = ("password", "secret", "token", "api_key", "apikey", "private", "cookie")
MAX_DEPTH = 12

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "argus_request_id", default=None
)

_RESERVED = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def is_secret_key(name: str) -> bool:
    lowered = name.lower().replace("_", "-")
    if lowered in SECRET_KEYS or lowered.replace("-", "_") in SECRET_KEYS:
        return True
    return any(fragment.replace("_", "-") in lowered for fragment in SECRET_FRAGMENTS)


def redact(value: Any, depth: int = 0) -> Any:
    """A copy of `value` with every secret-named key's value replaced."""
    if depth > MAX_DEPTH:
        return "[TOO DEEP]"
    if isinstance(value, Mapping):
        return {
            str(k): REDACTED if is_secret_key(str(k)) else redact(v, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        if _is_header_pair(value):
            name, item = value
            return [name, REDACTED if is_secret_key(str(name)) else redact(item, depth + 1)]
        return [redact(item, depth + 1) for item in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if hasattr(value, "items") and callable(value.items):  # multidict, CIMultiDict, headers
        return redact(list(value.items()), depth)
    return str(value)


def _is_header_pair(value: list[Any] | tuple[Any, ...]) -> bool:
    return len(value) == 2 and isinstance(value[0], str) and not isinstance(value[1], list | dict)


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _iso(record.created),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = request_id_var.get()
        if request_id:
            entry["request_id"] = request_id
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["error"] = "".join(traceback.format_exception(*record.exc_info)).strip()
        return json.dumps(redact(entry), default=str, separators=(",", ":"))


def _iso(created: float) -> str:
    millis = int(created * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{millis:03d}Z"


def setup_logging(service: str, level: str = "INFO", stream: Any = None) -> logging.Handler:
    """Route every logger to one JSON handler on stderr (or `stream`)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("aiohttp.access").disabled = True  # we write our own access log
    return handler
