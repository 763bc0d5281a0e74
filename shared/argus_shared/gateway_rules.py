"""The gateway's rules, in one table.

The development gateway (`argus_shared.gateway`, what `argus up` serves) reads this table at
runtime; the nginx configurations for docker-compose (`deploy/nginx/argus.conf`) and Kubernetes
(`deploy/k8s/base/gateway.nginx.conf`) are rendered from it (`argus gateway render compose|k8s`,
`argus_shared.gateway_nginx`) and committed; a test renders them again and compares, and sends
the same requests to all three.

Every path rule is a regular expression over the raw request target exactly as the client sent
it (origin form: the path, and the query after the first `?`), written in the subset that
Python's `re` and nginx's PCRE read alike (no flags, named groups, `\\d`/`\\w`/`\\s` or
`\\A`/`\\Z`: `GatewayRules` refuses them). The first rule that matches decides; a target no rule
matches is a 404. Nothing is decoded before the rules: a rule that must see through
percent-encoding says so itself (`spelled`), so the gateway routes exactly what a service will
decode, never a normalised copy of it.

The contract:

- a malformed target is a 400: anything but RFC 3986 path characters and percent-escapes that
  decode to printable ASCII or well-formed UTF-8 (so no NUL, controls, `%zz`, `%4`, a lone `%`,
  overlong forms such as `%c0%ae`, surrogates, stray continuation bytes, raw non-ASCII, `\\`,
  `#`, `|`, ...) before the query; in the query only printable ASCII without `#`;
- an encoded separator or dot in the path is a 400 (`%2F`/`%2f`, `%5C`/`%5c`, `%2E`/`%2e`):
  never decoded and routed, in any of the three;
- an empty or dot segment in the path (`//`, `/./`, `/../`, a final `/.` or `/..`) is a 400;
- `/internal` and `/metrics` of every service are a 404 however the segment is spelled (case,
  percent-encoded letters), also when followed by `/`, `;` (path parameters) or the query;
- `/<prefix>/rest` goes to the prefix's service as `/rest` (the query kept, an empty one
  dropped, nothing else touched), `/.well-known/jwks.json` to auth unchanged; `/healthz` and
  `/openapi.json` (every service's document in one, `OPENAPI_FILE`) are the gateway's own;
- every header in `STRIPPED_HEADERS` a client sends is dropped (all copies, any case), and so is
  any header whose name is not letters, digits and `-` (nginx's `ignore_invalid_headers`, so
  `X_User_Token` is not a way round); the gateway then sets `SET_HEADERS` itself;
- bodies stream both ways; one longer than `MAX_BODY_BYTES` is a 413;
- answers are never buffered; an event stream (`STREAM_PATHS`, e.g. `/audit/stream`) may stay
  silent for `LONG_IDLE_TIMEOUT_SECONDS` instead of `IDLE_TIMEOUT_SECONDS`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

HEX = "[0-9A-Fa-f]"
_CONT = f"%[89ABab]{HEX}"  # a percent-encoded UTF-8 continuation byte
# One percent-encoded character: printable ASCII (not NUL, a control or DEL), or a well-formed
# UTF-8 sequence (no overlong forms, no surrogates, nothing past U+10FFFF).
ENCODED_CHAR = "%(?:" + "|".join((
    f"[2-6]{HEX}", "7[0-9A-Ea-e]",
    f"[Cc][2-9A-Fa-f]{_CONT}", f"[Dd]{HEX}{_CONT}",
    f"[Ee]0%[ABab]{HEX}{_CONT}", f"[Ee][1-9A-Ca-cEFef]{_CONT}{_CONT}",
    f"[Ee][Dd]%[89]{HEX}{_CONT}",
    f"[Ff]0%[9ABab]{HEX}{_CONT}{_CONT}", f"[Ff][1-3]{_CONT}{_CONT}{_CONT}",
    f"[Ff]4%8{HEX}{_CONT}{_CONT}",
)) + ")"
PATH_CHAR = "[A-Za-z0-9._~!$&'()*+,;=:@/-]"  # RFC 3986 pchar and "/", unencoded
QUERY_CHAR = '[!-"$-~]'  # printable ASCII but "#"
SEGMENT_END = "(?:[/;?]|$)"
QUERY = "(?:[?].+)?"  # a route's query goes along as sent; an empty one (`/x?`) is dropped


def literal(text: str) -> str:
    """`text` as a pattern: only regex metacharacters escaped (`re.escape` also escapes `-`)."""
    return re.sub(r"([.^$*+?()\[\]{}|\\])", r"\\\1", text)


def spelled(word: str) -> str:
    """A pattern for `word` in any case, each letter plain or percent-encoded (hex in any case)."""
    parts = []
    for char in word:
        lower, upper = ord(char.lower()), ord(char.upper())
        highs = "".join(sorted({f"{lower >> 4:X}", f"{upper >> 4:X}"}))
        low = f"{lower & 15:X}"
        low_class = f"[{low}{low.lower()}]" if low.isalpha() else low
        plain = f"[{char.lower()}{char.upper()}]" if char.isalpha() else literal(char)
        parts.append(f"(?:{plain}|%[{highs}]{low_class})")
    return "".join(parts)


@dataclass(frozen=True)
class Service:
    """A service behind the gateway: `/<prefix>/...` goes to it, at `<name>:<port>` in a cluster
    (docker-compose and Kubernetes both name it so)."""

    prefix: str
    name: str
    port: int = 8000


@dataclass(frozen=True)
class Rule:
    """One line of the table. `action` is `refuse` (answer `status` with a problem titled
    `title`), `local` (the gateway's own answer, named by the rule: `health` or `openapi`) or
    `route` (to `service`; the pattern's one group is the upstream target, path and query)."""

    name: str
    pattern: str
    action: Literal["refuse", "local", "route"]
    status: int = 0
    title: str = ""
    service: str = ""
    long_lived: bool = False  # a route whose answers are event streams (LONG_IDLE_TIMEOUT)

    def problem(self) -> str:
        return problem_body(self.status, self.title)


@dataclass(frozen=True)
class Decision:
    rule: Rule
    target: str = ""  # for a route: what the service is sent, path and query


def problem_body(status: int, title: str, detail: str = "") -> str:
    """The gateway's own answers, byte for byte the same from the dev gateway and nginx."""
    body: dict[str, object] = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    return json.dumps(body)


SERVICES: tuple[Service, ...] = (
    Service("auth", "auth"),
    Service("tenant", "tenant-api"),
    Service("audit", "audit"),
    Service("webhooks", "webhooks"),
    Service("files", "files"),
)
BLOCKED_SEGMENTS: tuple[str, ...] = ("internal", "metrics")  # first segment after a prefix
JWKS_PATH = "/.well-known/jwks.json"
JWKS_SERVICE = "auth"
HEALTH_PATH = "/healthz"
HEALTH_BODY = json.dumps({"status": "ok"})
# the whole gateway's OpenAPI document: every service's, under its prefix (rendered by
# `argus openapi` into OPENAPI_FILE, which nginx serves; the dev gateway merges the services'
# own at each request)
OPENAPI_PATH = "/openapi.json"
OPENAPI_FILE = "deploy/openapi.json"
# event streams (SSE): service -> path; routed like the prefix, with LONG_IDLE_TIMEOUT_SECONDS
STREAM_PATHS: tuple[tuple[str, str], ...] = (("audit", "/stream"),)


def path_rules(services: tuple[Service, ...]) -> tuple[Rule, ...]:
    """The ordered path rules for these services (first match wins)."""
    blocked = "|".join(spelled(word) for word in BLOCKED_SEGMENTS)
    return (
        Rule("malformed",
             f"^(?!/(?:{PATH_CHAR}|{ENCODED_CHAR})*(?:[?]{QUERY_CHAR}*)?$)",
             "refuse", 400, "Malformed request target"),
        Rule("encoded-separator", "^[^?]*%(?:2[EeFf]|5[Cc])",
             "refuse", 400, "Encoded separators and dots are not accepted"),
        Rule("dot-segment", r"^[^?]*/(?:/|\.\.?" + SEGMENT_END + ")",
             "refuse", 400, "Empty or dot path segments are not accepted"),
        Rule("health", f"^{literal(HEALTH_PATH)}(?:[?]|$)", "local", 200),
        Rule("openapi", f"^{literal(OPENAPI_PATH)}(?:[?]|$)", "local", 200),
        Rule("jwks", f"^({literal(JWKS_PATH)}{QUERY})[?]?$", "route", service=JWKS_SERVICE),
        Rule("internal", f"^/[^/?]+/(?:{blocked}){SEGMENT_END}", "refuse", 404, "Not Found"),
        *(Rule(f"stream-{s.prefix}{path.replace('/', '-')}",
               f"^/{literal(s.prefix)}({literal(path)}{QUERY})[?]?$", "route",
               service=s.name, long_lived=True)
          for s in services for name, path in STREAM_PATHS if name == s.name),
        *(Rule(f"prefix-{s.prefix}", f"^/{literal(s.prefix)}(/[^?]*{QUERY})[?]?$", "route",
               service=s.name) for s in services),
    )


NOT_FOUND = Rule("default", "", "refuse", 404, "Not Found")
TOO_LARGE = (413, "Content Too Large")
NOT_ALLOWED = (405, "Method Not Allowed")  # anything but GET or HEAD of /openapi.json
UNAVAILABLE = (502, "Bad Gateway")

# Headers a client may not send to a service: identities only services mint, and every
# forwarding header (the gateway says itself who the client is). All copies, any case.
STRIPPED_HEADERS: tuple[str, ...] = (
    "X-User-Token",
    "Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto",
    "X-Forwarded-Port", "X-Forwarded-Prefix", "X-Forwarded-Server", "X-Forwarded-Scheme",
    "X-Real-IP", "X-Client-IP", "True-Client-IP", "X-Original-Forwarded-For",
    "X-Original-URL", "X-Original-URI", "X-Rewrite-URL",
)
# What the gateway sets instead: header -> what it carries.
SET_HEADERS: tuple[tuple[str, Literal["client-address", "scheme", "host", "request-id"]], ...] = (
    ("X-Forwarded-For", "client-address"),
    ("X-Forwarded-Proto", "scheme"),
    ("X-Forwarded-Host", "host"),
    ("X-Request-Id", "request-id"),
)
VALID_HEADER_NAME = "^[A-Za-z0-9-]+$"
# A client's X-Request-Id is kept when it has the form the services accept, else a new one.
REQUEST_ID = "^[A-Za-z0-9._:-]{8,128}$"
# Uploads stream through; files takes objects up to 100 MiB, plus room for a multipart envelope.
MAX_BODY_BYTES = 101 * 1024 * 1024
CONNECT_TIMEOUT_SECONDS = 5
IDLE_TIMEOUT_SECONDS = 300  # longest silence while reading an answer
# ... while reading an event stream (its heartbeats come every 15 s; a client reconnects anyway)
LONG_IDLE_TIMEOUT_SECONDS = 3600


_ABSOLUTE_FORM = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/?#@]*(?=[/?]|$)")


def origin_form(request_target: str) -> str:
    """The target the rules are applied to, as nginx's `$request_uri` holds it: an absolute-form
    target (`http://host/path`) loses its scheme and authority, `/` when nothing is left; any
    other form (with userinfo, `*`, a bare path) stays as sent, and the rules refuse it."""
    found = _ABSOLUTE_FORM.match(request_target)
    if found is None:
        return request_target
    return request_target[found.end():] or "/"


@dataclass(frozen=True)
class GatewayRules:
    services: tuple[Service, ...] = SERVICES
    rules: tuple[Rule, ...] = field(default_factory=lambda: path_rules(SERVICES))
    stripped_headers: tuple[str, ...] = STRIPPED_HEADERS
    set_headers: tuple[tuple[str, str], ...] = SET_HEADERS
    max_body_bytes: int = MAX_BODY_BYTES
    request_id: str = REQUEST_ID
    _compiled: tuple[re.Pattern[str], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        prefixes = [s.prefix for s in self.services]
        if len(set(prefixes)) != len(prefixes) or not all(
            re.fullmatch("[a-z][a-z0-9-]*", p) for p in prefixes
        ):
            raise ValueError(f"service prefixes must be distinct lower-case words: {prefixes}")
        for rule in self.rules:
            if re.search(r"\(\?[PiImsx<]|\\[dDwWsSAZbBz]", rule.pattern):
                raise ValueError(f"rule {rule.name}: not in the subset nginx reads alike")
        routed = {r.service for r in self.rules if r.action == "route"}
        if not routed <= {s.name for s in self.services}:
            raise ValueError(f"rules route to unknown services: {routed}")
        object.__setattr__(self, "_compiled", tuple(re.compile(r.pattern) for r in self.rules))

    @property
    def prefixes(self) -> Mapping[str, str]:
        return {s.prefix: s.name for s in self.services}

    def decide(self, request_target: str) -> Decision:
        """What the gateway does with a request target exactly as the client sent it."""
        target = origin_form(request_target)
        for rule, pattern in zip(self.rules, self._compiled, strict=True):
            found = pattern.search(target)
            if found:
                return Decision(rule, found.group(1) if rule.action == "route" else "")
        return Decision(NOT_FOUND)


GATEWAY = GatewayRules()
