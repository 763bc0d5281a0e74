"""`argus demo`: walk a newcomer through every control against the running `argus up`, through
its gateway, printing each step and what it proved; the first step that does not behave stops
the demo with one line naming it (exit 1).

Sign-up (the same answer for a known email) → the mailed token → MFA (TOTP, the code read from
the secret as a phone would) → an org → an invitation accepted by a second user → another org's
resource is 404 → idempotent money → a file, encrypted and back → a webhook delivered to a local
receiver and its signature verified → the audit log exported and its chain verified → a refresh
token reused after rotation ends its session everywhere.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from argus_shared.cli.state import SuiteState, read_state

MAIL_DEADLINE = 30.0
DELIVERY_DEADLINE = 30.0
JSON_TYPES = ("application/json", "application/problem+json")
REFRESH_GRACE = 10  # auth's default refresh_grace: a double submit inside it is no reuse


class DemoFailed(Exception):
    """A step did not behave; the message names it."""


def add_parser(commands: Any) -> None:
    commands.add_parser("demo", help="walk through every control against the running suite")


def run(args: argparse.Namespace) -> None:
    state = read_state(args.data_dir.resolve())
    if state is None or not state.up:
        raise DemoFailed(f"no suite is up under {args.data_dir.resolve()}; start `argus up` "
                         f"first (with the same --data-dir)")
    try:
        asyncio.run(Demo(state).run())
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise DemoFailed(f"the gateway at {state.gateway} did not answer: "
                         f"{type(exc).__name__}: {exc}".splitlines()[0]) from None


def newest_token(mailbox: Path, email: str, seen: set[str]) -> str | None:
    """The `Token:` line of the newest mail to `email` in the development mailbox, unless it
    is one already `seen` (its next mail has not arrived yet)."""
    for path in sorted(mailbox.glob("*.eml"), reverse=True):
        mail = message_from_bytes(path.read_bytes(), policy=policy.default)
        payload = mail.get_payload(decode=True)
        if str(mail["To"]) == email and isinstance(payload, bytes):
            found = re.search(r"Token: (\S+)", payload.decode())
            if found:
                return None if found.group(1) in seen else found.group(1)
    return None


@dataclass
class Answer:
    status: int
    body: Any
    raw: bytes


@dataclass
class Demo:
    state: SuiteState
    run_id: str = field(default_factory=lambda: secrets.token_hex(3))
    password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    http: aiohttp.ClientSession | None = None
    steps: int = 0
    seen: set[str] = field(default_factory=set)  # mailed tokens already read

    def email(self, who: str) -> str:
        return f"{who}-{self.run_id}@example.com"

    def ok(self, what: str) -> None:
        self.steps += 1
        print(f"  {self.steps:2}. ✓ {what}", flush=True)

    async def send(self, method: str, path: str, *, token: str | None = None,
                   body: Any = None, data: bytes | None = None,
                   headers: Mapping[str, str] | None = None) -> Answer:
        assert self.http is not None
        sent = {**(headers or {}), **({"Authorization": f"Bearer {token}"} if token else {})}
        async with self.http.request(method, self.state.gateway + path, json=body, data=data,
                                     headers=sent) as response:
            raw = await response.read()
            parsed = json.loads(raw) if raw and response.content_type in JSON_TYPES else None
            return Answer(response.status, parsed, raw)

    async def expect(self, status: int, step: str, method: str, path: str,
                     **kwargs: Any) -> Any:
        answer = await self.send(method, path, **kwargs)
        if answer.status != status:
            detail = (answer.body or {}).get("detail") if isinstance(answer.body, dict) else None
            raise DemoFailed(f"{step}: {method} {path} answered {answer.status}, expected "
                             f"{status}" + (f" ({detail})" if detail else ""))
        return answer.body

    async def run(self) -> None:
        print(f"argus demo against {self.state.gateway} (run {self.run_id})", flush=True)
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar(),
                                         timeout=aiohttp.ClientTimeout(total=30)) as http:
            self.http = http
            owner = await self.account("owner")
            secret = await self.mfa(owner)
            tokens = await self.mfa_login(owner, secret)
            org_id, token = await self.org(tokens["access_token"], "demo")
            await self.invitation(org_id, token)
            await self.isolation(org_id)
            await self.money(org_id, token)
            await self.file(org_id, token)
            await self.audit(org_id, token)
            await self.refresh_reuse(tokens, org_id, token)
        print(f"every control behaved ({self.steps} steps)", flush=True)

    async def account(self, who: str) -> str:
        email = self.email(who)
        first = await self.expect(202, "sign up", "POST", "/auth/signup",
                                  body={"email": email, "password": self.password})
        again = await self.expect(202, "sign up again", "POST", "/auth/signup",
                                  body={"email": email, "password": self.password})
        if first != again:
            raise DemoFailed("sign up: a known email answered differently (enumeration)")
        token = await self.mailed_token(email)
        await self.expect(200, "verify email", "POST", "/auth/verify-email",
                          body={"token": token})
        self.ok(f"{email} signed up (a known email gets the same answer) and verified the "
                f"mailed token")
        return email

    async def mailed_token(self, email: str) -> str:
        mailbox, deadline = Path(self.state.mailbox), time.monotonic() + MAIL_DEADLINE
        while time.monotonic() < deadline:
            token = await asyncio.to_thread(newest_token, mailbox, email, self.seen)
            if token is not None:
                self.seen.add(token)
                return token
            await asyncio.sleep(0.1)
        raise DemoFailed(f"mail: nothing reached {email} in {mailbox} within "
                         f"{MAIL_DEADLINE:.0f}s")

    async def login(self, email: str) -> dict[str, Any]:
        body = await self.expect(200, "log in", "POST", "/auth/login",
                                 body={"email": email, "password": self.password})
        return dict(body)

    async def mfa(self, email: str) -> str:
        import pyotp

        token = (await self.login(email))["access_token"]
        enrolment = await self.expect(201, "enrol TOTP", "POST", "/auth/mfa/totp", token=token)
        secret = str(enrolment["secret"])
        confirmed = await self.expect(200, "confirm TOTP", "POST", "/auth/mfa/totp/confirm",
                                      token=token, body={"code": pyotp.TOTP(secret).now()})
        self.ok(f"TOTP enrolled; {len(confirmed['recovery_codes'])} recovery codes shown once")
        return secret

    async def mfa_login(self, email: str, secret: str) -> dict[str, Any]:
        import pyotp

        challenge = await self.login(email)
        if not challenge.get("mfa_required"):
            raise DemoFailed("log in: a password alone signed in an account with MFA")
        # the next step's code: the one just used to confirm may not be used twice
        code = pyotp.TOTP(secret).at(time.time() + 30)
        tokens = await self.expect(200, "log in with MFA", "POST", "/auth/login/mfa",
                                   body={"mfa_token": challenge["mfa_token"], "code": code})
        self.ok("the password alone got only an MFA challenge; the TOTP code completed it")
        return dict(tokens)

    async def org(self, token: str, name: str) -> tuple[str, str]:
        slug = f"{name}-{self.run_id}"
        org = await self.expect(201, "create an org", "POST", "/tenant/orgs", token=token,
                                body={"name": slug, "slug": slug})
        switched = await self.expect(200, "switch org", "POST", "/auth/orgs/switch",
                                     token=token, body={"org_id": org["org_id"]})
        return str(org["org_id"]), str(switched["access_token"])

    async def invitation(self, org_id: str, token: str) -> None:
        invitee = self.email("member")
        await self.expect(201, "invite", "POST", f"/tenant/orgs/{org_id}/invitations",
                          token=token, body={"email": invitee, "role": "member"})
        mailed = await self.mailed_token(invitee)
        await self.account("member")
        member = (await self.login(invitee))["access_token"]
        await self.expect(200, "accept the invitation", "POST", "/tenant/invitations/accept",
                          token=member, body={"token": mailed})
        await self.expect(200, "switch org as the member", "POST", "/auth/orgs/switch",
                          token=member, body={"org_id": org_id})
        self.ok("an org created; a second user accepted its mailed invitation as a member")

    async def isolation(self, org_id: str) -> None:
        outsider = await self.account("outsider")
        login = await self.login(outsider)
        _, their_token = await self.org(login["access_token"], "other")
        await self.expect(404, "another org's wallet", "GET", f"/tenant/orgs/{org_id}/wallet",
                          token=their_token)
        self.ok("another org's owner asking for this org's wallet got 404")

    async def money(self, org_id: str, token: str) -> None:
        key = {"Idempotency-Key": f"demo-{self.run_id}"}
        path = f"/tenant/orgs/{org_id}/wallet/deposits"
        first = await self.send("POST", path, token=token, body={"amount_cents": 2500},
                                headers=key)
        again = await self.send("POST", path, token=token, body={"amount_cents": 2500},
                                headers=key)
        wallet = await self.expect(200, "wallet", "GET", f"/tenant/orgs/{org_id}/wallet",
                                   token=token)
        if first.status != 201 or again.raw != first.raw or wallet["balance_cents"] != 2500:
            raise DemoFailed(f"money: a replayed deposit answered {again.status} and left "
                             f"{wallet['balance_cents']} cents, expected the first answer and "
                             f"2500")
        self.ok("a deposit sent twice with one Idempotency-Key: the same answer, once in the "
                "balance")

    async def file(self, org_id: str, token: str) -> None:
        me = await self.expect(200, "me", "GET", "/auth/me", token=token)
        content = f"hello from the demo {self.run_id}\n".encode()
        stored = await self.expect(201, "upload", "POST",
                                   f"/files/objects/{org_id}/{me['id']}?name=demo.txt",
                                   token=token, data=content,
                                   headers={"Content-Type": "text/plain"})
        back = await self.send("GET", f"/files/objects/{org_id}/{me['id']}/{stored['id']}",
                               token=token)
        if back.status != 200 or back.raw != content:
            raise DemoFailed(f"files: the download answered {back.status} with other bytes")
        self.ok("a file stored encrypted came back byte for byte")
        await self.webhook(org_id, token)

    async def webhook(self, org_id: str, token: str) -> None:
        from argus_webhooks.signing import BadSignature, verify_standard

        received: asyncio.Queue[tuple[dict[str, str], bytes]] = asyncio.Queue()

        async def hook(request: web.Request) -> web.Response:
            await received.put((dict(request.headers), await request.read()))
            return web.Response(text="ok")

        app = web.Application()
        app.router.add_post("/hook", hook)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            made = await self.expect(201, "webhook endpoint", "POST",
                                     f"/webhooks/orgs/{org_id}/webhooks/endpoints", token=token,
                                     body={"url": f"http://127.0.0.1:{port}/hook",
                                           "event_types": ["wallet.deposit"]})
            await self.expect(201, "deposit", "POST", f"/tenant/orgs/{org_id}/wallet/deposits",
                              token=token, body={"amount_cents": 1},
                              headers={"Idempotency-Key": f"hook-{self.run_id}"})
            try:
                headers, body = await asyncio.wait_for(received.get(), DELIVERY_DEADLINE)
            except TimeoutError:
                raise DemoFailed(f"webhooks: no delivery within {DELIVERY_DEADLINE:.0f}s") \
                    from None
        finally:
            await runner.cleanup()
        lowered = {k.lower(): v for k, v in headers.items()}
        try:
            verify_standard(lowered, body, made["secret"], time.time())
        except BadSignature as exc:
            raise DemoFailed(f"webhooks: the delivery's signature does not verify: {exc}") \
                from None
        self.ok("the deposit's webhook reached a local receiver, its signature verified with "
                "the secret shown once")

    async def refresh_reuse(self, tokens: dict[str, Any], org_id: str, token: str) -> None:
        old = tokens["refresh_token"]
        rotated = await self.expect(200, "refresh", "POST", "/auth/token/refresh",
                                    body={"refresh_token": old})
        print("      (waiting out the 10 s double-submit grace window)", flush=True)
        await asyncio.sleep(REFRESH_GRACE + 1)
        await self.expect(401, "reuse the spent refresh token", "POST", "/auth/token/refresh",
                          body={"refresh_token": old})
        await self.expect(401, "the successor after reuse", "POST", "/auth/token/refresh",
                          body={"refresh_token": rotated["refresh_token"]})
        await self.expect(401, "the session's access token after reuse", "GET",
                          f"/tenant/orgs/{org_id}/wallet", token=token)
        self.ok("a refresh token reused after rotation was refused and ended its session: "
                "its successor and its access token stopped working at once")

    async def audit(self, org_id: str, token: str) -> None:
        from argus_audit import export

        deadline = time.monotonic() + DELIVERY_DEADLINE
        while True:
            found = await self.expect(200, "audit events", "GET",
                                      f"/audit/orgs/{org_id}/audit/events?action=wallet.deposit",
                                      token=token)
            if len(found["events"]) >= 2 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        exported = await self.send("GET", f"/audit/orgs/{org_id}/audit/export.ndjson",
                                   token=token)
        try:
            verified = export.verify_lines(exported.raw.splitlines(keepends=True), None)
        except (export.Broken, export.Malformed) as exc:
            raise DemoFailed(f"audit: the export does not verify: {exc}") from None
        self.ok(f"the audit log holds the deposits; its export verifies: {verified.summary()}")
