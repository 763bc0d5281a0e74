"""JSON logs: one line per record, secrets redacted at any depth, the request id on every line.

Secrets are kept out in two ways:

- keys: a record's `extra` fields become JSON keys, and any key whose name suggests a secret
  (`password`, `token`, `authorization`, `cookie`, `secret`, `api_key`, ...) has its value
  replaced by `[REDACTED]` wherever it appears, in nested mappings, in lists and in header lists
  of pairs;
- values: free text (a message and its arguments, exception text and tracebacks, stack info, every
  string field) is scrubbed of what looks like a secret (`scrub`): bearer and basic credentials,
  `argus_sk_` API keys, `art_` refresh tokens, JWTs and X-User-Tokens, `whsec_` webhook secrets,
  `otpauth://` URIs, `__Host-argus_*` cookies, secret-bearing header lines, `name=value` and
  quoted `"name": "value"` pairs, passwords in URLs, PEM private keys. An HTTP parser error
  (aiohttp's "Error handling request") is logged as its kind only, never with the client's raw
  bytes, so even a secret no pattern knows stays out.

Values are scrubbed when a record is created (a record factory installed on import), so every
handler sees scrubbed text: ours, logging's last-resort handler used before logging is
configured, and any a library adds. Uncaught exceptions are printed scrubbed too.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from aiohttp.http_exceptions import HttpProcessingError

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



@contextlib.contextmanager
def request_context(request_id: str | None) -> Iterator[None]:
    """Within the block, every log line (and every event recorded with a default `Ctx`) carries
    `request_id`, the request the work was caused by; None: no request's. Reset on leaving, so
    the next item of a batch, or the next message, never inherits it."""
    token = request_id_var.set(request_id or None)
    try:
        yield
    finally:
        request_id_var.reset(token)


_RESERVED = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def is_secret_key(name: str) -> bool:
    lowered = name.lower().replace("_", "-")
    if lowered in SECRET_KEYS or lowered.replace("-", "_") in SECRET_KEYS:
        return True
    return any(fragment.replace("_", "-") in lowered for fragment in SECRET_FRAGMENTS)


# A name that marks what follows it as secret, in `name=value`, `"name": "value"` and header
# lines. The same names as `is_secret_key`, as a pattern. Every repetition is bounded, and every
# pattern below anchored on something literal, so that no text an attacker sends (a 16 KiB path,
# say) costs more than linear time.
_NAME = (
    r"(?<![\w-])(?:[\w-]{0,40}?(?:password|passwd|secret|token|api[-_]?key|private[-_]?key|cookie"
    r"|authorization|signature|credential)[\w-]{0,40}|totp|otp|dsn|recovery[-_]codes?)(?![\w-])"
)
# What a header names as secret when it starts a `Name: value` line.
_HEADER = (
    r"(?<![\w-])(?:(?:proxy-)?authorization|(?:set-)?cookie|x-user-token|x-api-key|api-key"
    r"|x-(?:auth|access|refresh|session|csrf)-token|[\w-]{0,40}-signature"
    r"|[\w-]{0,40}?secret[\w-]{0,40}"
    r"|password|passwd)(?![\w-])"
)
# A run of characters up to the end of a line, where a line also ends at an escaped `\r` or
# `\n` (the repr of raw bytes, as HTTP parser errors print them).
_RUN = r"(?:[^\s\\]|\\(?![rn]))+"
_TO_LINE_END = r"(?:[^\r\n\\]|\\(?![rn]))+"
_B64URL = r"[A-Za-z0-9_-]"

# (pattern, replacement), applied in order: the first ones keep the most context.
_SCRUBS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern, flags), replacement)
    for pattern, flags, replacement in (
        (r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY-----.*?(?:-----END[A-Z0-9 ]*PRIVATE KEY-----|\Z)",
         re.S, "[REDACTED PRIVATE KEY]"),
        # "password": "x", 'Authorization': 'Bearer x', ('Cookie', 'x'), b'token': b'x'
        (rf"(?P<k>([\"'])(?:{_NAME})\2[ \t]*[:,=][ \t]*b?)([\"'])(?:\\.|(?!\3).)*\3",
         re.I, rf"\g<k>\3{REDACTED}\3"),
        (rf"(?P<k>{_HEADER}[ \t]*:[ \t]*){_TO_LINE_END}", re.I, rf"\g<k>{REDACTED}"),
        (rf"(?P<k>{_NAME}=)(?:[^\s\\&]|\\(?![rn]))+", re.I, rf"\g<k>{REDACTED}"),
        (r"(?P<k>://[^\s:/@]{0,256}:)[^\s@/]{1,256}@", 0, rf"\g<k>{REDACTED}@"),
        (rf"(?P<k>\bbearer[ \t]+){_RUN}", re.I, rf"\g<k>{REDACTED}"),
        (r"(?P<k>\bBasic[ \t]+)(?=\S{6})" + _RUN, 0, rf"\g<k>{REDACTED}"),
        (r"(?P<k>__(?:Host|Secure)-[\w-]+=)[^\s;]+", 0, rf"\g<k>{REDACTED}"),
        (r"(?P<k>otpauth://)[^\s]+", re.I, rf"\g<k>{REDACTED}"),
        (rf"(?P<k>argus_sk_){_B64URL}+", 0, rf"\g<k>{REDACTED}"),
        (rf"(?P<k>\bart_){_B64URL}{{8,}}", 0, rf"\g<k>{REDACTED}"),
        (r"(?P<k>whsec_)[A-Za-z0-9+/=_-]+", 0, rf"\g<k>{REDACTED}"),
        (rf"eyJ{_B64URL}+\.{_B64URL}+(?:\.{_B64URL}*)?", 0, REDACTED),  # JWT, X-User-Token
    )
)
# Every pattern above needs one of these (in lower case): text without any is returned untouched
# at the cost of one search of its lower-cased copy, as nearly every message and access-log field
# is. (The same search with re.IGNORECASE costs ten times as much.)
_HINT = re.compile(
    r"password|passwd|secret|token|api.?key|private|cookie|authoriz|signature|credential|otp"
    r"|dsn|recovery|bearer|basic|argus_sk_|art_|whsec_|eyj|__host-|__secure-|://"
)


def scrub(text: str) -> str:
    """`text` with every secret-looking value in it replaced by `[REDACTED]`."""
    if not _HINT.search(text.lower()):
        return text
    for pattern, replacement in _SCRUBS:
        text = pattern.sub(replacement, text)
    return text


def redact(value: Any, depth: int = 0) -> Any:
    """A copy of `value` with every secret-named key's value replaced and every string scrubbed."""
    if depth > MAX_DEPTH:
        return "[TOO DEEP]"
    if isinstance(value, str):
        return scrub(value)
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
    if isinstance(value, int | float | bool) or value is None:
        return value
    if hasattr(value, "items") and callable(value.items):  # multidict, CIMultiDict, headers
        return redact(list(value.items()), depth)
    return scrub(str(value))


def _is_header_pair(value: list[Any] | tuple[Any, ...]) -> bool:
    return len(value) == 2 and isinstance(value[0], str) and not isinstance(value[1], list | dict)


_TRACEBACKS = logging.Formatter()
_RAW_BYTES = re.compile(r"\s*(?:bytearray\()?b['\"].*", re.S)


def http_error_text(exc: HttpProcessingError) -> str:
    """What an HTTP parser error says without the client's bytes it quotes: its kind, status and
    reason (`aiohttp.http_exceptions.LineTooLong: 400, Got more than 8190 bytes when reading`)."""
    lines = []
    for line in str(exc.message or "").splitlines():
        kept = _RAW_BYTES.sub("", line).strip()
        if kept:
            lines.append(kept.rstrip(":"))
        if kept != line.strip():
            break
    reason = scrub(": ".join(lines))[:200] or "malformed request"
    kind = f"{type(exc).__module__}.{type(exc).__qualname__}"
    return f"{kind}: {exc.code}, {reason} (the request's bytes are not logged)"


def exception_text(exc_info: Any) -> str:
    """A record's traceback, scrubbed (an HTTP parser error: its kind only)."""
    exc = exc_info[1] if isinstance(exc_info, tuple) else None
    if isinstance(exc, HttpProcessingError):
        return http_error_text(exc)
    return scrub(_TRACEBACKS.formatException(exc_info))


def scrub_record(record: logging.LogRecord) -> None:
    """Scrub a record's free text in place: its message (formatted with its arguments), its
    exception text and stack info. Formatters then use the scrubbed `exc_text`."""
    if record.args or not isinstance(record.msg, str):
        try:
            text = record.getMessage()
        except Exception:  # a bad format string: its arguments are not shown raw
            text = f"{record.msg} (arguments that do not fit the message)"
        record.msg, record.args = scrub(text), ()
    else:
        record.msg = scrub(record.msg)
    if record.exc_info and not record.exc_text:
        record.exc_text = exception_text(record.exc_info)
    if record.stack_info:
        record.stack_info = scrub(record.stack_info)


RecordFactory = Callable[..., logging.LogRecord]


def _scrubbing(factory: RecordFactory) -> RecordFactory:
    def make(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        scrub_record(record)
        record._argus_scrubbed = True
        return record

    make.argus_scrubbing = True  # type: ignore[attr-defined]
    return make


def _excepthook(exc_type: type[BaseException], exc: BaseException, tb: Any) -> None:
    sys.stderr.write(exception_text((exc_type, exc, tb)) + "\n")


def _thread_excepthook(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is not SystemExit and args.exc_value is not None:
        name = args.thread.name if args.thread else "?"
        sys.stderr.write(f"Exception in thread {name}:\n"
                         + exception_text((args.exc_type, args.exc_value, args.exc_traceback))
                         + "\n")


def install_scrubbing() -> None:
    """Scrub every log record this process creates from now on, whoever handles it, and the
    uncaught exceptions Python prints (unless a program installed its own hooks). Idempotent."""
    factory = logging.getLogRecordFactory()
    if not getattr(factory, "argus_scrubbing", False):
        logging.setLogRecordFactory(_scrubbing(factory))
    if sys.excepthook is sys.__excepthook__:
        sys.excepthook = _excepthook
    if threading.excepthook is threading.__excepthook__:
        threading.excepthook = _thread_excepthook


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        scrubbed = getattr(record, "_argus_scrubbed", False)  # by the record factory
        message = record.getMessage()
        entry: dict[str, Any] = {
            "time": _iso(record.created),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "message": message if scrubbed else scrub(message),
        }
        request_id = request_id_var.get()
        if request_id:
            entry["request_id"] = scrub(request_id)
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = REDACTED if is_secret_key(key) else redact(value)
        if record.exc_info:
            error = record.exc_text if scrubbed and record.exc_text else None
            entry["error"] = (error or exception_text(record.exc_info)).strip()
        if record.stack_info:
            entry["stack"] = record.stack_info if scrubbed else scrub(record.stack_info)
        return json.dumps(entry, default=str, separators=(",", ":"))


def _iso(created: float) -> str:
    millis = int(created * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{millis:03d}Z"


# Loggers of the libraries the services run on. Every logger, these and any other that exists
# when logging is set up, loses its own handlers and propagates to ours, so each record goes
# through the JSON formatter and its redaction.
LIBRARY_LOGGERS = (
    "aiohttp.access", "aiohttp.client", "aiohttp.internal", "aiohttp.server", "aiohttp.web",
    "aiohttp.websocket", "asyncpg", "nats", "asyncio", "py.warnings", "opentelemetry",
)


def setup_logging(service: str, level: str = "INFO", stream: Any = None) -> logging.Handler:
    """Route every logger to one JSON handler on stderr (or `stream`)."""
    install_scrubbing()
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name)
    for logger in list(root.manager.loggerDict.values()):
        if isinstance(logger, logging.Logger):
            _through_root(logger)
    logging.getLogger("aiohttp.access").disabled = True  # we write our own access log
    logging.captureWarnings(True)
    return handler


def _through_root(logger: logging.Logger) -> None:
    for old in list(logger.handlers):
        logger.removeHandler(old)
    logger.propagate = True


def ensure_logging(service: str, level: str = "WARNING") -> bool:
    """`setup_logging` unless this process already routes its logs somewhere; whether it did."""
    install_scrubbing()
    if logging.getLogger().handlers:
        return False
    setup_logging(service, level)
    return True


install_scrubbing()  # from the first import: nothing logged before setup_logging leaks either
