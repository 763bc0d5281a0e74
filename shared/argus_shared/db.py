"""asyncpg pools per service role, and the tenant transaction that scopes RLS to one org."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, TypeAlias, TypedDict
from urllib.parse import urlsplit
from uuid import UUID

import asyncpg
import msgspec
from asyncpg.pool import PoolConnectionProxy

# What a query function takes: a connection of its own, or one borrowed from a pool.
Conn: TypeAlias = asyncpg.Connection | PoolConnectionProxy
# A row as a reader takes it: fetched (`asyncpg.Record` is no `Mapping` to the type checker,
# though it reads like one), or built in Python.
RowLike: TypeAlias = Mapping[str, Any] | asyncpg.Record

SESSION_SETTINGS = {
    "statement_timeout": "10s",
    "lock_timeout": "5s",
    "idle_in_transaction_session_timeout": "30s",
}


class ConnectKwargs(TypedDict):
    host: str | None
    port: int
    database: str
    user: str
    password: str


def one(row: asyncpg.Record | None) -> asyncpg.Record:
    """The row of a statement that always returns one (`insert ... returning`, an aggregate,
    an update of a row the transaction has already found)."""
    if row is None:
        raise LookupError("a statement that returns one row returned none")
    return row


def connect_kwargs(database_url: str, user: str, password: str) -> ConnectKwargs:
    """Host, port and database from the URL; the role and password are the caller's."""
    parts = urlsplit(database_url)
    return {
        "host": parts.hostname,
        "port": parts.port or 5432,
        "database": parts.path.lstrip("/") or "postgres",
        "user": user,
        "password": password,
    }


_json_encode = msgspec.json.Encoder().encode


def _json_text(value: Any) -> str:
    return _json_encode(value).decode()


async def _init_connection(conn: asyncpg.Connection) -> None:
    # msgspec, not the json module: a batch of audit events encodes hundreds of these per
    # statement (same JSON, several times faster)
    for kind in ("json", "jsonb"):
        await conn.set_type_codec(kind, encoder=_json_text, decoder=msgspec.json.decode,
                                  schema="pg_catalog")


async def _release(conn: asyncpg.Connection) -> None:
    """What a released connection needs, without a round trip in the common case: requests set
    tenant settings transaction-locally and hold no session state (no session-level settings,
    LISTENs are removed by their owner, locks are transaction-level), so only an open
    transaction has to be undone. (asyncpg's default runs RESET ALL etc. on every release.)"""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


async def create_pool(
    database_url: str,
    user: str,
    password: str,
    *,
    schema: str | None = None,
    application_name: str = "argus",
    min_size: int = 1,
    max_size: int = 10,
) -> asyncpg.Pool:
    settings = dict(SESSION_SETTINGS, application_name=application_name)
    if schema:
        settings["search_path"] = schema
    pool = await asyncpg.create_pool(
        **connect_kwargs(database_url, user, password),
        min_size=min_size,
        max_size=max_size,
        server_settings=settings,
        init=_init_connection,
        reset=_release,
        timeout=10,
    )
    assert pool is not None
    return pool


async def connect(
    database_url: str, user: str, password: str, **kwargs: Any
) -> asyncpg.Connection:
    return await asyncpg.connect(
        **connect_kwargs(database_url, user, password),
        server_settings=SESSION_SETTINGS,
        timeout=10,
        **kwargs,
    )


@asynccontextmanager
async def tenant_tx(
    pool: asyncpg.Pool, org_id: UUID | str | None, user_id: UUID | str | None = None
) -> AsyncIterator[PoolConnectionProxy]:
    """One transaction whose first statement sets `app.org_id` and `app.user_id` locally.

    With no org the setting is empty and every RLS policy fails closed (zero rows).
    """
    async with pool.acquire() as conn:
        # BEGIN and the settings go in one round trip (simple protocol); the values are inlined
        # only after they have been parsed as UUIDs, so nothing else can reach the SQL text
        await conn.execute(
            f"BEGIN; SELECT set_config('app.org_id', '{_uuid(org_id)}', true), "
            f"set_config('app.user_id', '{_uuid(user_id)}', true)"
        )
        try:
            yield conn
        except BaseException:
            with contextlib.suppress(Exception):  # a broken connection is reset by the pool
                await conn.execute("ROLLBACK")
            raise
        await conn.execute("COMMIT")


def _uuid(value: UUID | str | None) -> str:
    return "" if value is None else str(UUID(str(value)))
