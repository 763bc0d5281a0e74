"""SSRF defence: a webhook URL must be https (in production) and every address its host
resolves to must be public; the connection then goes to an address that was checked (a pinned
resolver), so DNS cannot change its answer between the check and the connection."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult

from argus_webhooks.config import Network

METADATA = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254"),
            ipaddress.ip_address("100.100.100.200")}


class Refused(Exception):
    """The target is not allowed; the message says why."""


def check_url(url: str, https_only: bool) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise Refused("not an http(s) URL with a host")
    if https_only and parts.scheme != "https":
        raise Refused("only https URLs are accepted")
    if parts.username or parts.password:
        raise Refused("credentials in the URL are not accepted")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise Refused("the port is not valid") from None
    return parts.hostname, port


def refused_reason(address: ipaddress.IPv4Address | ipaddress.IPv6Address,
                   allow: Sequence[Network]) -> str | None:
    if any(address in net for net in allow):
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    if address in METADATA:
        return "a cloud metadata address"
    for attribute, what in (("is_unspecified", "unspecified"), ("is_loopback", "loopback"),
                            ("is_link_local", "link-local"), ("is_multicast", "multicast"),
                            ("is_private", "private"), ("is_reserved", "reserved")):
        if getattr(address, attribute):
            return f"a {what} address"
    return None


async def resolve_checked(host: str, port: int, allow: Sequence[Network]) -> list[str]:
    """The host's addresses, all of them allowed, or Refused."""
    try:
        literal = ipaddress.ip_address(host.strip("[]"))
        addresses = [literal]
    except ValueError:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError:
            raise Refused(f"{host} does not resolve") from None
        addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
    for address in addresses:
        reason = refused_reason(address, allow)
        if reason:
            raise Refused(f"{host} resolves to {reason} ({address})")
    return sorted({str(a) for a in addresses})


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
