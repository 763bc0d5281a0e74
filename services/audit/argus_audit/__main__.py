"""Run the audit service (`python -m` or its console script), settings from the environment.

`python -m argus_audit prune` applies retention by plan, as the owner role: for each org it
signs a retention checkpoint at the last link it removes, so verification still holds.
"""

from __future__ import annotations

import asyncio
import sys

import asyncpg

from argus_audit.app import SERVICE, create_app
from argus_audit.maintenance import prune
from argus_shared import db
from argus_shared.runner import fail, run_service
from argus_shared.settings import OWNER_ROLE, ConfigError, Settings


async def run_prune(settings: Settings) -> dict[str, int]:
    if settings.master_keys is None or settings.db_owner_password is None:
        raise ConfigError("prune needs ARGUS_MASTER_KEYS_FILE and ARGUS_DB_OWNER_PASSWORD_FILE")
    conn = await db.connect(settings.database_url, OWNER_ROLE, settings.db_owner_password)
    try:
        return await prune(conn, settings.master_keys)
    finally:
        await conn.close()


def main() -> None:
    if sys.argv[1:] == ["prune"]:
        try:
            removed = asyncio.run(run_prune(Settings.from_env(SERVICE)))
        except ConfigError as exc:
            fail(str(exc))
        except (OSError, asyncpg.PostgresError) as exc:
            fail(f"cannot prune: {str(exc).splitlines()[0]}", 1)
        print(f"pruned {sum(removed.values())} events in {len(removed)} orgs")
        return
    if sys.argv[1:]:
        fail(f"unknown command {sys.argv[1]!r} (try: prune)")
    run_service(SERVICE, create_app)


if __name__ == "__main__":
    main()
