"""Where a webhook may not go: the special-purpose address ranges, the embeddings of IPv4 in
IPv6, and the cloud metadata addresses.

The tables follow IANA's special-purpose address registries (iana-ipv4-special-registry and
iana-ipv6-special-registry, as of RFC 9637, RFC 9602, RFC 9665 and RFC 9780), with IANA's
"Globally Reachable" column as `reachable` (None where IANA says N/A), plus the blocks those
registries leave to others: IPv4 multicast, IPv6 multicast and site-local, and everything
outside IPv6 global unicast (2000::/3). A range is refused unless IANA marks it globally
reachable; the anycast service addresses (which reach the nearest instance, possibly one inside
our own network) and the non-routable identifier prefixes are refused although IANA marks them
reachable (`why`). Python's `is_global` is consulted as well (see `ssrf.refused_reason`), but it
differs between Python releases, so these tables alone decide every range they name.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import NamedTuple

from argus_webhooks.config import Network

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class Range(NamedTuple):
    network: Network
    what: str  # how a refusal names it, with its article
    source: str
    reachable: bool | None  # IANA's "Globally Reachable"; None where IANA says N/A
    why: str = ""  # why it is refused although IANA marks it globally reachable

    @property
    def refused(self) -> bool:
        return self.reachable is not True or bool(self.why)

    def reason(self) -> str:
        return f"{self.what} ({self.network}, {self.source}{': ' + self.why if self.why else ''})"


def _r(network: str, what: str, source: str, reachable: bool | None, why: str = "") -> Range:
    return Range(ipaddress.ip_network(network), what, source, reachable, why)


ANYCAST = "anycast reaches the nearest instance, which may be inside our network"
IDENTIFIER = "identifiers, not routable locators"

IPV4: tuple[Range, ...] = (
    _r("0.0.0.0/8", 'a "this network" address', "RFC 791", False),
    _r("0.0.0.0/32", 'an unspecified ("this host on this network") address', "RFC 1122",
       False),
    _r("10.0.0.0/8", "a private-use address", "RFC 1918", False),
    _r("100.64.0.0/10", "a shared address space (carrier-grade NAT) address", "RFC 6598",
       False),
    _r("127.0.0.0/8", "a loopback address", "RFC 1122", False),
    _r("169.254.0.0/16", "a link-local address", "RFC 3927", False),
    _r("172.16.0.0/12", "a private-use address", "RFC 1918", False),
    _r("192.0.0.0/24", "an IETF protocol assignment", "RFC 6890", False),
    _r("192.0.0.0/29", "an IPv4 service continuity (DS-Lite) address", "RFC 7335", False),
    _r("192.0.0.8/32", "the IPv4 dummy address", "RFC 7600", False),
    _r("192.0.0.9/32", "the PCP anycast address", "RFC 7723", True, ANYCAST),
    _r("192.0.0.10/32", "the TURN anycast address", "RFC 8155", True, ANYCAST),
    _r("192.0.0.170/32", "a NAT64/DNS64 discovery address", "RFC 8880", False),
    _r("192.0.0.171/32", "a NAT64/DNS64 discovery address", "RFC 8880", False),
    _r("192.0.2.0/24", "a documentation (TEST-NET-1) address", "RFC 5737", False),
    _r("192.31.196.0/24", "an AS112 anycast address", "RFC 7535", True, ANYCAST),
    _r("192.52.193.0/24", "an AMT anycast address", "RFC 7450", True, ANYCAST),
    _r("192.88.99.0/24", "a deprecated 6to4 relay anycast address", "RFC 7526", None),
    _r("192.88.99.2/32", "the 6a44 relay anycast address", "RFC 6751", False),
    _r("192.168.0.0/16", "a private-use address", "RFC 1918", False),
    _r("192.175.48.0/24", "an AS112 direct delegation anycast address", "RFC 7534", True,
       ANYCAST),
    _r("198.18.0.0/15", "a benchmarking address", "RFC 2544", False),
    _r("198.51.100.0/24", "a documentation (TEST-NET-2) address", "RFC 5737", False),
    _r("203.0.113.0/24", "a documentation (TEST-NET-3) address", "RFC 5737", False),
    _r("224.0.0.0/4", "a multicast address", "RFC 5771", False),
    _r("240.0.0.0/4", "a reserved address", "RFC 1112", False),
    _r("255.255.255.255/32", "the limited broadcast address", "RFC 919", False),
)

IPV6: tuple[Range, ...] = (
    # outside 2000::/3 nothing is global unicast (IANA IPv6 address space registry)
    _r("::/3", "a reserved IPv6 address", "RFC 4291", False),
    _r("4000::/2", "a reserved IPv6 address", "RFC 4291", False),
    _r("8000::/1", "a reserved IPv6 address", "RFC 4291", False),
    _r("::1/128", "a loopback address", "RFC 4291", False),
    _r("::/128", "an unspecified address", "RFC 4291", False),
    _r("::/96", "a deprecated IPv4-compatible address", "RFC 4291", False),
    _r("::ffff:0:0/96", "an IPv4-mapped address", "RFC 4291", False),
    _r("::ffff:0:0:0/96", "an IPv4-translated address", "RFC 2765", False),
    _r("64:ff9b::/96", "a NAT64 address", "RFC 6052", True),
    _r("64:ff9b:1::/48", "a local-use NAT64 address", "RFC 8215", False),
    _r("100::/64", "a discard-only address", "RFC 6666", False),
    _r("100:0:0:1::/64", "a dummy IPv6 prefix address", "RFC 9780", False),
    _r("2001::/23", "an IETF protocol assignment", "RFC 2928", False),
    _r("2001::/32", "a Teredo address", "RFC 4380", None),
    _r("2001:1::1/128", "the PCP anycast address", "RFC 7723", True, ANYCAST),
    _r("2001:1::2/128", "the TURN anycast address", "RFC 8155", True, ANYCAST),
    _r("2001:1::3/128", "the DNS-SD SRP anycast address", "RFC 9665", True, ANYCAST),
    _r("2001:2::/48", "a benchmarking address", "RFC 5180", False),
    _r("2001:3::/32", "an AMT anycast address", "RFC 7450", True, ANYCAST),
    _r("2001:4:112::/48", "an AS112 anycast address", "RFC 7535", True, ANYCAST),
    _r("2001:10::/28", "a deprecated ORCHID address", "RFC 4843", None),
    _r("2001:20::/28", "an ORCHIDv2 address", "RFC 7343", True, IDENTIFIER),
    _r("2001:30::/28", "a drone remote ID (DET) address", "RFC 9374", True, IDENTIFIER),
    _r("2001:db8::/32", "a documentation address", "RFC 3849", False),
    _r("2002::/16", "a 6to4 address", "RFC 3056", None),
    _r("2620:4f:8000::/48", "an AS112 direct delegation anycast address", "RFC 7534", True,
       ANYCAST),
    _r("3fff::/20", "a documentation address", "RFC 9637", False),
    _r("5f00::/16", "a segment routing (SRv6) SID", "RFC 9602", False),
    _r("fc00::/7", "a unique-local (private) address", "RFC 4193", False),
    _r("fe80::/10", "a link-local address", "RFC 4291", False),
    _r("fec0::/10", "a deprecated site-local address", "RFC 3879", False),
    _r("ff00::/8", "a multicast address", "RFC 4291", False),
)

# Instance metadata and platform endpoints, refused even when an allow-list covers their network
# (only an allow-list entry of exactly that one address lets one in)
METADATA: frozenset[IPAddress] = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254",  # AWS, GCP, Azure, OCI, DigitalOcean, OpenStack
    "169.254.170.2",  # AWS ECS task metadata
    "169.254.170.23",  # AWS EKS pod identity
    "169.254.0.23",  # Tencent Cloud
    "100.100.100.200",  # Alibaba Cloud
    "168.63.129.16",  # Azure WireServer (a public address)
    "192.0.0.192",  # Oracle Cloud (legacy)
    "fd00:ec2::254",  # AWS IMDS over IPv6
    "fd00:ec2::23",  # AWS EKS pod identity over IPv6
    "fd20:ce::254",  # GCP metadata over IPv6
))

# most specific first, so that the first match is the one that decides
_BY_SPECIFICITY = {
    4: sorted(IPV4, key=lambda r: -r.network.prefixlen),
    6: sorted(IPV6, key=lambda r: -r.network.prefixlen),
}


def special(address: IPAddress) -> Range | None:
    """The most specific special-purpose range holding `address`, if any."""
    for entry in _BY_SPECIFICITY[address.version]:
        if address in entry.network:
            return entry
    return None


_COMPATIBLE = ipaddress.ip_network("::/96")
_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_ISATAP_IIDS = (0x00005EFE, 0x02005EFE)  # RFC 5214: 00-00-5E-FE, with or without the u bit


def _low32(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)


def embedded_ipv4(address: IPAddress) -> Iterator[tuple[str, ipaddress.IPv4Address]]:
    """Each IPv4 address `address` carries, with the name of the embedding."""
    if address.version == 4:
        return
    assert isinstance(address, ipaddress.IPv6Address)
    if address.ipv4_mapped is not None:
        yield "an IPv4-mapped address", address.ipv4_mapped
    elif address in _COMPATIBLE and int(address) > 1:  # not :: nor ::1
        yield "an IPv4-compatible address", _low32(address)
    elif address in _TRANSLATED:
        yield "an IPv4-translated address", _low32(address)
    elif address in _NAT64:
        yield "a NAT64 address", _low32(address)
    if address.sixtofour is not None:
        yield "a 6to4 address", address.sixtofour
    if address.teredo is not None:
        server, client = address.teredo
        yield "a Teredo address (server)", server
        yield "a Teredo address (client)", client
    if (int(address) >> 32) & 0xFFFFFFFF in _ISATAP_IIDS:
        yield "an ISATAP address", _low32(address)
