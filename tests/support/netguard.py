"""A guard on every socket connect of the test process: connects to loopback are recorded, any
other is refused (PermissionError, before the packet leaves) and fails the test."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from typing import Any

import pytest


def is_loopback(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


class ConnectGuard:
    def __init__(self) -> None:
        self.attempts: list[tuple[str, int]] = []  # every (host, port) asked for
        self.refused: list[tuple[str, int]] = []  # those outside loopback

    def check(self, sock: socket.socket, address: Any) -> None:
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            return
        host, port = str(address[0]), int(address[1])
        self.attempts.append((host, port))
        if not is_loopback(host):
            self.refused.append((host, port))
            raise PermissionError(f"the test guard refuses a connection to {host}:{port}")

    def ports(self) -> set[int]:
        return {port for _, port in self.attempts}


@pytest.fixture
def connect_guard(monkeypatch: pytest.MonkeyPatch) -> Iterator[ConnectGuard]:
    guard = ConnectGuard()
    connect, connect_ex = socket.socket.connect, socket.socket.connect_ex

    def guarded_connect(sock: socket.socket, address: Any) -> None:
        guard.check(sock, address)
        connect(sock, address)

    def guarded_connect_ex(sock: socket.socket, address: Any) -> int:
        guard.check(sock, address)
        return connect_ex(sock, address)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", guarded_connect_ex)
    yield guard
    assert not guard.refused, f"connections outside loopback were attempted: {guard.refused}"
