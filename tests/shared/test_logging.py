"""JSON logs: one object per line, secrets redacted wherever they hide, request id attached."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import time

import pytest
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong
from multidict import CIMultiDict

from argus_shared.logs import (
    JsonFormatter,
    redact,
    request_context,
    request_id_var,
    scrub,
    setup_logging,
)

SECRET = "s3cr3t-value-9d2f"


def log_line(message: str, **extra: object) -> tuple[str, dict[str, object]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("auth"))
    logger = logging.getLogger("test.logging")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        logger.info(message, extra=extra)
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    return text, json.loads(text)


@pytest.mark.parametrize(
    "extra",
    [
        {"password": SECRET},
        {"refresh_token": SECRET},
        {"body": {"user": {"new_password": SECRET}}},
        {"request": {"headers": {"Authorization": f"Bearer {SECRET}"}}},
        {"headers": [("Cookie", f"sid={SECRET}"), ("Accept", "json")]},
        {"headers": CIMultiDict({"Set-Cookie": f"sid={SECRET}", "X-User-Token": SECRET})},
        {"items": [{"api_key": SECRET}, {"client_secret": SECRET}]},
        {"deep": {"a": {"b": {"c": {"d": {"token": SECRET}}}}}},
        {"webhook": {"signing_secret": SECRET}},
    ],
)
def test_secret_keys_are_redacted_at_any_depth(extra: dict[str, object]) -> None:
    text, _ = log_line("event", **extra)
    assert SECRET not in text
    assert "[REDACTED]" in text


def test_ordinary_fields_survive_and_the_line_is_one_json_object() -> None:
    text, entry = log_line("user signed in", user_id="u-1", attempts=3,
                           headers={"Accept": "application/json"})
    assert text.count("\n") == 1
    assert entry["message"] == "user signed in"
    assert entry["user_id"] == "u-1" and entry["attempts"] == 3
    assert entry["headers"] == {"Accept": "application/json"}
    assert entry["service"] == "auth" and entry["level"] == "info"
    assert str(entry["time"]).endswith("Z")


def test_the_request_id_of_the_context_is_on_every_line() -> None:
    token = request_id_var.set("req-ctx-0001")
    try:
        _, entry = log_line("inside a request")
    finally:
        request_id_var.reset(token)
    assert entry["request_id"] == "req-ctx-0001"
    _, outside = log_line("outside")
    assert "request_id" not in outside


def test_a_request_context_holds_for_its_block_only_even_when_it_raises() -> None:
    """What a consumer wraps each item in: the item's id inside, the outer one after (a None
    id inside means no request's, not the outer one's)."""
    with request_context("req-outer-0001"):
        with pytest.raises(RuntimeError), request_context("req-item-0002"):
            assert log_line("item")[1]["request_id"] == "req-item-0002"
            raise RuntimeError("the handler failed")
        with request_context(None):
            assert "request_id" not in log_line("no request's")[1]
        assert log_line("after")[1]["request_id"] == "req-outer-0001"
    assert request_id_var.get() is None


def test_exceptions_are_one_field_of_one_line() -> None:
    stream = io.StringIO()
    handler = setup_logging("files", "INFO", stream)
    try:
        try:
            raise ValueError("broken thing")
        except ValueError:
            logging.getLogger("test.exc").exception("failed", extra={"password": SECRET})
    finally:
        logging.getLogger().removeHandler(handler)
    text = stream.getvalue()
    assert text.count("\n") == 1
    entry = json.loads(text)
    assert "ValueError: broken thing" in entry["error"]
    assert SECRET not in text


def test_redact_leaves_values_of_other_types_readable() -> None:
    assert redact({"count": 2, "ok": True, "none": None, "ids": (1, 2)}) == {
        "count": 2, "ok": True, "none": None, "ids": [1, 2]
    }


API_KEY = "argus_sk_" + "Zk3vQ9xW2mB7nR4tY6uI8oP0aS1dF5gH_jK-lZ9cV3b"
REFRESH = "art_" + "Qw8eR7tY6uI5oP4aS3dF2gH1jK0lZ9xC8vB7nM6q-_w"
JWT = ("eyJhbGciOiJFZERTQSIsImtpZCI6ImsxIn0"
       ".eyJzdWIiOiJ1c2VyOjQyIiwic2lkIjoiOWYxYiJ9"
       ".c2lnbmF0dXJlLW9mLXRoZS10b2tlbi1sb25nLWVub3VnaA")
XUT = "v1.k1.eyJzdWIiOiJ1c2VyOjQyIiwiaXNzIjoidGVuYW50LWFwaSJ9.bWFjLW9mLXRoZS14LXVzZXItdG9rZW4"
WHSEC = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw/6ai+ZRbH2E="
TOTP = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
PLAIN = "pl41n-s3cr3t-w1th0ut-pr3f1x"


@pytest.mark.parametrize(
    ("text", "secret", "kept"),
    [
        # the case: an Authorization line ended by LF, as aiohttp quotes the raw bytes
        (f"Missing expected CR after header value:\n\n    b'Authorization: Bearer {API_KEY}"
         "\\nX-Next: 1'\n    ^", API_KEY, "b'Authorization: [REDACTED]\\nX-Next: 1'"),
        (f"Authorization: Bearer {JWT}", JWT, "Authorization: [REDACTED]"),
        (f"Proxy-Authorization: Basic {PLAIN}", PLAIN, "Proxy-Authorization: [REDACTED]"),
        (f"Cookie: sid={PLAIN}; theme=dark", PLAIN, "Cookie: [REDACTED]"),
        (f"set-cookie: __Host-argus_refresh={REFRESH}; Secure", REFRESH, "set-cookie: [REDACTED]"),
        (f"X-User-Token: {XUT}\r\nAccept: */*", XUT, "X-User-Token: [REDACTED]\r\nAccept: */*"),
        (f"X-API-Key: {PLAIN}\\x01", PLAIN, "X-API-Key: [REDACTED]"),
        (f"Webhook-Signature: v1,{PLAIN}", PLAIN, "Webhook-Signature: [REDACTED]"),
        (f"bearer {PLAIN} sent", PLAIN, "bearer [REDACTED] sent"),
        (f"Basic YWxpY2U6{PLAIN}", PLAIN, "Basic [REDACTED]"),
        (f"key {API_KEY} refused", API_KEY, "key argus_sk_[REDACTED] refused"),
        (f"refresh {REFRESH}.", REFRESH, "refresh art_[REDACTED]."),
        (f"got {JWT} from the client", JWT, "got [REDACTED] from the client"),
        (f"bad token {XUT}", XUT, "bad token v1.k1.[REDACTED]"),
        (f"inbound secret {WHSEC} loaded", WHSEC, "inbound secret whsec_[REDACTED] loaded"),
        (f"uri otpauth://totp/Argus:alice?secret={TOTP}&issuer=Argus", TOTP,
         "uri otpauth://[REDACTED]"),
        (f"__Host-argus_access={JWT}; __Host-argus_refresh={REFRESH}", REFRESH,
         "__Host-argus_access=[REDACTED]; __Host-argus_refresh=[REDACTED]"),
        (f"GET /login?password={PLAIN}&next=/ HTTP/1.1", PLAIN,
         "GET /login?password=[REDACTED]&next=/ HTTP/1.1"),
        (f"/verify-email?token={PLAIN}", PLAIN, "/verify-email?token=[REDACTED]"),
        (f"client_secret={PLAIN} api_key={PLAIN}", PLAIN,
         "client_secret=[REDACTED] api_key=[REDACTED]"),
        (f'{{"email": "a@example.com", "new_password": "{PLAIN}"}}', PLAIN,
         '{"email": "a@example.com", "new_password": "[REDACTED]"}'),
        (f"{{'Authorization': 'Bearer {PLAIN}', 'Accept': 'json'}}", PLAIN,
         "{'Authorization': '[REDACTED]', 'Accept': 'json'}"),
        (f"[('Cookie', 'sid={PLAIN}'), ('Accept', 'json')]", PLAIN,
         "[('Cookie', '[REDACTED]'), ('Accept', 'json')]"),
        (f"{{b'totp': b'{TOTP}'}}", TOTP, "{b'totp': b'[REDACTED]'}"),
        (f"postgresql://argus_auth:{PLAIN}@127.0.0.1:5432/argus", PLAIN,
         "postgresql://argus_auth:[REDACTED]@127.0.0.1:5432/argus"),
        (f"smtps://mailer:{PLAIN}@smtp.example.com:465", PLAIN, "smtps://mailer:[REDACTED]@"),
        (f"-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEI{PLAIN}\n-----END PRIVATE KEY-----",
         PLAIN, "[REDACTED PRIVATE KEY]"),
    ],
)
def test_scrub_removes_each_kind_of_secret_from_free_text(
    text: str, secret: str, kept: str
) -> None:
    scrubbed = scrub(text)
    assert secret not in scrubbed
    assert secret[-12:] not in scrubbed and secret[:12] not in scrubbed
    assert kept in scrubbed
    assert scrub(scrubbed) == scrubbed


@pytest.mark.parametrize(
    "text",
    [
        "request", "serving", "x-user-token refused", "X-User-Token refused: expired",
        "refresh token reuse: every session revoked", "TokenError: expired",
        "a password hashing process died; starting a new one",
        "GET /orgs/3f1c1d0e-0000-4000-8000-000000000001/members?limit=20&cursor=abc",
        "start_time=12 art_short", "curl/8.5.0", "Error handling request from 127.0.0.1",
        "cannot reach PostgreSQL at 127.0.0.1:5432 as argus_auth: password authentication failed",
        "http://127.0.0.1:8101/readyz",
    ],
)
def test_scrub_leaves_ordinary_text_alone(text: str) -> None:
    assert scrub(text) == text


def plain_handler() -> tuple[io.StringIO, logging.Handler]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(name)s %(message)s"))
    return stream, handler


def test_every_record_is_scrubbed_whatever_handler_writes_it() -> None:
    """Not only our JSON formatter: any handler (here a plain one) sees scrubbed records."""
    stream, handler = plain_handler()
    logger = logging.getLogger("test.plain")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.error("Authorization: Bearer %s", API_KEY)
        logger.error(RuntimeError(f"refused {REFRESH}"))
        logger.error("%(who)s sent %(what)s", {"who": "client", "what": JWT})
        logger.error("too few arguments %s %s", f"password={PLAIN}")
        try:
            raise ValueError(f"header X-User-Token: {XUT}")
        except ValueError:
            logger.exception("failed with %s", WHSEC)
        logger.warning("where", stack_info=True, extra={"note": API_KEY})
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    for secret in (API_KEY, REFRESH, JWT, PLAIN, XUT, WHSEC):
        assert secret not in text
    assert "Authorization: [REDACTED]" in text and "client sent [REDACTED]" in text
    assert "ValueError: header X-User-Token: [REDACTED]" in text


@pytest.mark.parametrize(
    "name",
    ["aiohttp.server", "aiohttp.access", "aiohttp.web", "aiohttp.client", "aiohttp.internal",
     "asyncpg", "nats.aio.client", "asyncio", "opentelemetry.sdk"],
)
def test_library_loggers_go_through_our_formatter_even_with_handlers_of_their_own(
    name: str,
) -> None:
    theirs, their_handler = plain_handler()
    library = logging.getLogger(name)
    library.addHandler(their_handler)
    library.propagate = False
    ours = io.StringIO()
    handler = setup_logging("auth", "INFO", ours)
    library.disabled = False
    try:
        try:
            raise ConnectionError(f"cookie: {PLAIN}")
        except ConnectionError:
            library.error("upstream sent %s", f"Set-Cookie: __Host-argus_access={JWT}",
                          exc_info=True, extra={"headers": {"Authorization": API_KEY}})
    finally:
        logging.getLogger().removeHandler(handler)
        logging.getLogger("aiohttp.access").disabled = False
    assert theirs.getvalue() == ""
    entry = json.loads(ours.getvalue())
    assert entry["logger"] == name and entry["message"] == "upstream sent Set-Cookie: [REDACTED]"
    assert "cookie: [REDACTED]" in entry["error"]
    assert PLAIN not in ours.getvalue() and JWT not in ours.getvalue()
    assert API_KEY not in ours.getvalue()


def test_an_http_parser_error_is_logged_without_the_clients_bytes() -> None:
    ours = io.StringIO()
    handler = setup_logging("gateway", "INFO", ours)
    try:
        for exc in (
            BadHttpMessage(f"Invalid header value char:\n\n  b'Cookie: sid={PLAIN}\\x01'\n  ^"),
            LineTooLong(f"b'{PLAIN}{'a' * 90}...'", "8190"),
        ):
            try:
                raise exc
            except BadHttpMessage:
                logging.getLogger("aiohttp.server").exception(
                    "Error handling request from %s", "127.0.0.1")
    finally:
        logging.getLogger().removeHandler(handler)
    first, second = (json.loads(line) for line in ours.getvalue().splitlines())
    assert PLAIN not in ours.getvalue()
    assert first["message"] == "Error handling request from 127.0.0.1"
    assert first["error"].startswith(
        "aiohttp.http_exceptions.BadHttpMessage: 400, Invalid header value char")
    assert second["error"].startswith(
        "aiohttp.http_exceptions.LineTooLong: 400, Got more than 8190 bytes when reading")


SCRUBBED_PROCESS = f"""
import logging, sys, warnings
import argus_shared.logs
logging.getLogger("aiohttp.server").error("Error with Authorization: Bearer {API_KEY}")
try:
    raise ValueError("password={PLAIN}")
except ValueError:
    logging.getLogger("asyncpg").exception("connect failed")
raise RuntimeError("X-User-Token: {XUT}")
"""


def test_before_logging_is_configured_nothing_leaks_either() -> None:
    """A process that has not set up logging yet: logging's last-resort handler and Python's
    report of an uncaught exception both print scrubbed text."""
    done = subprocess.run([sys.executable, "-c", SCRUBBED_PROCESS], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 1
    for secret in (API_KEY, PLAIN, XUT):
        assert secret not in done.stderr
    assert "Error with Authorization: [REDACTED]" in done.stderr
    assert "ValueError: password=[REDACTED]" in done.stderr
    assert "RuntimeError: X-User-Token: [REDACTED]" in done.stderr


@pytest.mark.parametrize(
    "text",
    ["token" * 6000, "'" + "token" * 6000, "x-" * 15000 + "secret", "eyJa." * 6000,
     "a.b://" * 5000, "'password': '" * 2500, "password=" * 3500, "Bearer " * 4500],
)
def test_scrub_takes_linear_time_on_whatever_a_client_sends(text: str) -> None:
    """A 30 KB path or header is scrubbed in milliseconds (with unbounded repetitions, some of
    these took seconds each: a request could have bought a second of CPU)."""
    started = time.perf_counter()
    scrub(text)
    assert time.perf_counter() - started < 0.25
