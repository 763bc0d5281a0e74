"""Every webhooks test runs under the connect guard: a connection outside loopback fails it."""

from __future__ import annotations

import pytest

from support.netguard import ConnectGuard, connect_guard

__all__ = ["connect_guard"]


@pytest.fixture(autouse=True)
def loopback_only(connect_guard: ConnectGuard) -> ConnectGuard:
    return connect_guard
