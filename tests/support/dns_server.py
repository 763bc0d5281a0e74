"""A small authoritative DNS server for tests, on a real UDP socket on 127.0.0.1 (dnspython
parses and writes the messages): TXT records set per name, NXDOMAIN for names it does not
hold, and a count of the queries it answered."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset


@dataclass
class DnsServer(asyncio.DatagramProtocol):
    records: dict[str, list[str]] = field(default_factory=dict)
    queries: int = 0
    transport: asyncio.DatagramTransport | None = None
    port: int = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def publish(self, name: str, *values: str) -> None:
        self.records[name.lower()] = list(values)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a datagram endpoint's

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        query = dns.message.from_wire(data)
        response = dns.message.make_response(query)
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True).lower()
        self.queries += 1
        if name not in self.records:
            response.set_rcode(dns.rcode.NXDOMAIN)
        elif question.rdtype == dns.rdatatype.TXT and self.records[name]:
            response.answer.append(dns.rrset.from_text_list(
                question.name, 60, "IN", "TXT", [f'"{value}"' for value in self.records[name]]))
        assert self.transport is not None
        self.transport.sendto(response.to_wire(), addr)

