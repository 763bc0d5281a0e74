"""SSRF defence: a webhook URL must be https (in production) and every address its host
resolves to must be public; the connection then goes to an address that was checked (a pinned
resolver), so DNS cannot change its answer between the check and the connection."""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult

from argus_shared.validation import NOT_URL
from argus_webhooks.config import Network, Resolve
from argus_webhooks.ranges import METADATA, IPAddress, embedded_ipv4, special

ALLOW_SETTING = "ARGUS_WEBHOOKS_ALLOW_NETS"


class Refused(Exception):
    """The target is not allowed; the message says why."""


_LABEL = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)")
_NUMERIC = re.compile(r"0x[0-9a-f]*|[0-9]+")


def check_url(url: str, https_only: bool) -> tuple[str, int]:
    """The host and port of an http(s) URL (https only if asked) with a well-formed host and
    no credentials, or Refused. Whitespace and controls are refused anywhere: urlsplit drops
    CR, LF and tab silently, but the URL as stored and requested would keep them."""
    if NOT_URL.search(url):
        raise Refused("the URL has whitespace or control characters")
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # an unclosed "[", a bad IP literal, NFKC tricks such as U+FF20
        raise Refused(f"the URL is malformed ({exc})") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise Refused("not an http(s) URL with a host")
    if https_only and parts.scheme != "https":
        raise Refused("only https URLs are accepted")
    if "@" in parts.netloc:
        raise Refused("credentials in the URL are not accepted")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise Refused("the port is not valid") from None
    _check_host(parts.hostname, bracketed="[" in parts.netloc)
    return parts.hostname, port


def _check_host(host: str, bracketed: bool) -> None:
    if bracketed:
        if "%" in host:
            raise Refused("an IPv6 zone is not accepted")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise Refused("the host is not an IPv6 address") from None
        return
    if not host.isascii():
        raise Refused("the host name is not ASCII: give an internationalised one in its xn-- "
                      "form")
    name = host.removesuffix(".")
    labels = name.split(".")
    if len(name) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise Refused("the host name is not valid")
    if _NUMERIC.fullmatch(labels[-1]):
        # resolvers read 1.2.3, 0x7f.1 and 017.0.0.1 as addresses: only dotted quads are taken
        try:
            ipaddress.IPv4Address(name)
        except ValueError:
            raise Refused("a numeric host must be a dotted-quad IPv4 address") from None


def refused_reason(address: IPAddress, allow: Sequence[Network]) -> str | None:
    """Why a connection to `address` is refused, or None if it is allowed: a cloud metadata
    address (unless allowed as exactly that address), anything not globally reachable (the
    special-purpose tables of `ranges`, then `is_global`), or an IPv6 address embedding an IPv4
    one that is refused; an address in `allow` is allowed."""
    plain = _unscoped(address)
    direct = [plain] if plain.version == 4 else [plain, *_mapped(plain)]
    if any(a in METADATA for a in direct):
        return None if _allowed(direct, allow, exactly=True) else "a cloud metadata address"
    if _allowed(direct, allow):
        return None
    reason = _embedding_reason(plain) or _own_reason(plain)
    if reason and any(a.is_loopback for a in direct):
        reason += f"; {ALLOW_SETTING} can allow it (development and tests)"
    return reason


def _unscoped(address: IPAddress) -> IPAddress:
    """`address` without its zone (`fe80::1%eth0`), which would make it unequal to itself."""
    if isinstance(address, ipaddress.IPv6Address):
        return ipaddress.IPv6Address(int(address))
    return address


def _mapped(address: IPAddress) -> list[IPAddress]:
    """The IPv4 address an IPv4-mapped address is (the connection goes to it)."""
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return [mapped] if mapped is not None else []


def _allowed(addresses: Sequence[IPAddress], allow: Sequence[Network],
             exactly: bool = False) -> bool:
    return any(a.version == net.version and a in net and (not exactly or net.num_addresses == 1)
               for a in addresses for net in allow)


def _embedding_reason(address: IPAddress) -> str | None:
    for kind, inner in embedded_ipv4(address):
        reason = "a cloud metadata address" if inner in METADATA else _own_reason(inner)
        if reason:
            return f"{kind} embedding {reason}"
    return None


def _own_reason(address: IPAddress) -> str | None:
    """The address's special-purpose range if that is refused, else whether Python thinks it is
    not global (a range the tables name is decided by them: `is_global` varies by release)."""
    entry = special(address)
    if entry is not None:
        return entry.reason() if entry.refused else None
    if not address.is_global:
        return "an address that is not globally reachable"
    return None


async def system_resolve(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


async def resolve_checked(host: str, port: int, allow: Sequence[Network],
                          resolve: Resolve | None = None) -> list[str]:
    """The host's addresses, all of them allowed, or Refused. The refusal names the range, never
    the address a name resolved to (a tenant learns nothing of internal DNS but that it was
    refused)."""
    try:
        addresses: list[IPAddress] = [ipaddress.ip_address(host.strip("[]"))]
        literal = True
    except ValueError:
        addresses, literal = await _resolved(host, port, resolve or system_resolve), False
    for address in addresses:
        reason = refused_reason(address, allow)
        if reason:
            raise Refused(f"{host} is {reason}" if literal else f"{host} resolves to {reason}")
    return sorted({str(a) for a in addresses})


async def _resolved(host: str, port: int, resolve: Resolve) -> list[IPAddress]:
    try:
        answers = await resolve(host, port)
        addresses = [ipaddress.ip_address(answer) for answer in answers]
    except (OSError, UnicodeError, ValueError):
        raise Refused(f"{host} does not resolve") from None
    if not addresses:
        raise Refused(f"{host} does not resolve")
    return addresses


class PinnedResolver(AbstractResolver):
    """Answers only with the addresses that were checked for this one host."""

    def __init__(self, host: str, addresses: Sequence[str]) -> None:
        self.host, self.addresses = host, list(addresses)

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        if host != self.host:
            raise OSError(f"unexpected host {host}")
        return [_result(host, address, port) for address in self.addresses]

    async def close(self) -> None:
        return None


def _result(host: str, address: str, port: int) -> Any:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    return {"hostname": host, "host": address, "port": port, "family": family, "proto": 0,
            "flags": socket.AI_NUMERICHOST}
