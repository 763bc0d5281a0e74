"""Malformed raw HTTP requests that carry secrets, sent over plain sockets, and a scan of logs.

Each request breaks HTTP in one way (a header line ended by LF alone, a control character in a
header value, an oversized header or URL, a bad method, a bad chunk size...) so that aiohttp's
own error logger reports it; each carries a secret where the broken part is, so that a log that
echoes the raw bytes would show it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import uuid
from dataclasses import dataclass, field

from argus_shared import xut
from argus_shared.settings import KeyRing, format_keyring

PAD = b"a" * 20000  # past the services' 16 KiB field limit and aiohttp's 8190-byte default


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jwt() -> tuple[str, list[str]]:
    header = _b64url(json.dumps({"alg": "EdDSA", "kid": "k1", "typ": "JWT"}).encode())
    claims = _b64url(json.dumps({
        "sub": str(uuid.uuid4()), "sid": str(uuid.uuid4()), "org": None, "role": None,
        "amr": ["pwd"], "iss": "argus-auth", "aud": "argus", "iat": 1, "exp": 2,
    }).encode())
    signature = _b64url(os.urandom(64))
    return f"{header}.{claims}.{signature}", [claims, signature]


@dataclass
class Secret:
    kind: str
    value: str
    cores: list[str] = field(default_factory=list)  # the random parts, none of which may leak

    def pieces(self) -> list[str]:
        """The value and its random parts, whole and as their first and last 12 characters
        (a log that truncates or splits a secret still shows one of these)."""
        found = [self.value]
        for core in self.cores or [self.value]:
            found += [core, core[:12], core[-12:]]
        return found


@dataclass
class Secrets:
    api_key: Secret
    jwt: Secret
    refresh: Secret
    cookie: Secret
    password: Secret
    x_user_token: Secret
    basic: Secret
    webhook: Secret
    otpauth: Secret

    @classmethod
    def make(cls) -> Secrets:
        key_core = secrets.token_urlsafe(32)
        jwt, jwt_cores = _jwt()
        refresh_core = secrets.token_urlsafe(32)
        cookie = secrets.token_urlsafe(24)
        password = "Pw-" + secrets.token_urlsafe(12)
        ring = KeyRing.parse(format_keyring({"k1": os.urandom(32)}), "test")
        token = xut.sign(ring, xut.Identity(sub="user:42", request_id="req-12345678"),
                         issuer="tenant-api", audience="audit")
        basic_password = secrets.token_urlsafe(12)
        basic = base64.b64encode(f"alice:{basic_password}".encode()).decode()
        webhook = base64.b64encode(os.urandom(32)).decode()
        totp = base64.b32encode(os.urandom(20)).decode().rstrip("=")
        return cls(
            api_key=Secret("api key", "argus_sk_" + key_core, [key_core]),
            jwt=Secret("jwt", jwt, jwt_cores),
            refresh=Secret("refresh token", "art_" + refresh_core, [refresh_core]),
            cookie=Secret("session cookie", cookie),
            password=Secret("password", password),
            x_user_token=Secret("x-user-token", token, token.split(".")[2:]),
            basic=Secret("basic credentials", basic, [basic, basic_password]),
            webhook=Secret("webhook secret", "whsec_" + webhook, [webhook]),
            otpauth=Secret("totp secret",
                           f"otpauth://totp/Argus:alice?secret={totp}&issuer=Argus", [totp]),
        )

    def all(self) -> list[Secret]:
        return list(vars(self).values())


def _get(path: str, *headers: bytes, version: bytes = b"HTTP/1.1") -> bytes:
    head = b"GET " + path.encode() + b" " + version + b"\r\nHost: 127.0.0.1\r\n"
    return head + b"".join(headers) + b"\r\n"


def malformed_requests(s: Secrets, prefix: str = "") -> dict[str, list[bytes]]:
    """name -> the parts to send, one after another on one connection (the next part only
    once the previous one is answered). Every one of them is logged by aiohttp as an error."""
    login = f"{prefix}/login"
    return {
        "authorization ended by LF": [_get(login, f"Authorization: Bearer {s.api_key.value}\n"
                                                  "X-Next: 1\r\n".encode())],
        "jwt bearer ended by LF": [_get(login, f"Authorization: Bearer {s.jwt.value}\n"
                                               "X-Next: 1\r\n".encode())],
        "api key header ended by LF": [_get(login, f"X-API-Key: {s.api_key.value}\n"
                                                   "X-Next: 1\r\n".encode())],
        "cookies ended by LF": [_get(login, (
            f"Cookie: __Host-argus_refresh={s.refresh.value}; "
            f"__Host-argus_access={s.jwt.value}; sid={s.cookie.value}\nX-Next: 1\r\n").encode())],
        "x-user-token with a control character": [
            _get(login, f"X-User-Token: {s.x_user_token.value}\x01\r\n".encode())],
        "basic credentials with a control character": [
            _get(login, f"Authorization: Basic {s.basic.value}\x01\r\n".encode())],
        "otpauth uri ended by LF": [_get(login, f"X-Otp: {s.otpauth.value}\nX-Next: 1\r\n"
                                                .encode())],
        "space before the colon": [_get(login, f"Authorization : Bearer {s.jwt.value}\r\n"
                                                .encode())],
        "folded header line": [_get(login, b"X-A: 1\r\n",
                                    f" Authorization: Bearer {s.refresh.value}\r\n".encode())],
        "oversized cookie": [_get(login, f"Cookie: sid={s.cookie.value}".encode() + PAD
                                  + b"\r\n")],
        "oversized authorization": [_get(login, f"Authorization: Bearer {s.refresh.value}"
                                         .encode() + PAD + b"\r\n")],
        "oversized url with a password": [_get(f"{login}?password={s.password.value}&pad="
                                               + PAD.decode())],
        "bad http version": [_get(f"{login}?password={s.password.value}", version=b"HTTP/9.9")],
        "invalid character in the path": [_get(f"{login}\x00?token={s.refresh.value}")],
        "bad method after a good request": [
            _get(f"{prefix}/healthz"),
            f"G@T {login}?password={s.password.value}&api_key={s.api_key.value} HTTP/1.1\r\n"
            "Host: 127.0.0.1\r\n\r\n".encode(),
        ],
        "bad chunk size": [(
            f"POST {prefix}/webhooks/inbound/stripe HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Transfer-Encoding: chunked\r\n\r\n{s.webhook.value}\r\nabc\r\n0\r\n\r\n").encode()],
    }


def well_formed_requests(s: Secrets, prefix: str = "") -> list[bytes]:
    """Valid requests with secrets where the access log looks: path, User-Agent, request id."""
    return [
        _get(f"{prefix}/{s.api_key.value}", f"User-Agent: curl Bearer {s.jwt.value}\r\n".encode(),
             f"X-Request-Id: {s.refresh.value}\r\n".encode(), b"Connection: close\r\n"),
        _get(f"{prefix}/sessions/{s.refresh.value}",
             f"X-Request-Id: {s.api_key.value}\r\n".encode(), b"Connection: close\r\n"),
    ]


async def send(port: int, parts: list[bytes], timeout: float = 5) -> list[bytes]:
    """Send each part on one connection, reading an answer after each; the answers."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answers = []
    try:
        for part in parts:
            writer.write(part)
            await writer.drain()
            answers.append(await asyncio.wait_for(_read_answer(reader), timeout))
    except (ConnectionError, TimeoutError):
        pass  # the server may close before reading everything we sent
    finally:
        writer.close()
    return answers


async def _read_answer(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head + await reader.readexactly(length)


def leaks(text: str, found: Secrets) -> list[str]:
    """Every secret kind of which any piece appears in `text`."""
    return [s.kind for s in found.all() if any(piece in text for piece in s.pieces())]


def error_lines(text: str) -> list[dict[str, object]]:
    """aiohttp's 'Error handling request' records among JSON log lines."""
    entries = []
    for line in text.splitlines():
        if "Error handling request" in line:
            entries.append(json.loads(line[line.index("{"):]))
    return entries
