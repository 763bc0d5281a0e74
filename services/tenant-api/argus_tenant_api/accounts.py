"""What tenant-api asks auth about an account, acting for that user (auth answers only for the
user a request acts for): its email and whether it is verified."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from nats.aio.client import Client

from argus_shared import xut
from argus_shared.nats import request
from argus_shared.settings import KeyRing
from argus_tenant_api import SERVICE


async def account_of(nc: Client, keys: KeyRing, user_id: UUID,
                     request_id: str | None = None) -> dict[str, Any]:
    """{"email", "verified"}; RpcError when auth does not know the user or does not answer."""
    answer: dict[str, Any] = await request(
        nc, keys, issuer=SERVICE, service="auth", method="user",
        payload={"user_id": str(user_id)},
        identity=xut.Identity(sub=f"user:{user_id}", request_id=request_id or ""))
    return answer
