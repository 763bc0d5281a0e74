"""JSON logs: one object per line, secrets redacted wherever they hide, request id attached."""

from __future__ import annotations

import io
import json
import logging

import pytest
from multidict import CIMultiDict

from argus_shared.logs import JsonFormatter, redact, request_id_var, setup_logging

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
