"""Run the audit service (`python -m` or its console script), settings from the environment.

`python -m argus_audit prune` applies retention by plan, as the owner role: for each org it
signs a retention checkpoint at the last link it removes, so verification still holds.
"""

from __future__ import annotations

from argus_audit import SERVICE
from argus_audit.app import create_app
from argus_audit.maintenance import prune
from argus_shared import db, runner
from argus_shared.settings import OWNER_ROLE, ConfigError, Settings


async def run_prune(settings: Settings) -> str:
    if settings.master_keys is None or settings.db_owner_password is None:
        raise ConfigError("prune needs ARGUS_MASTER_KEYS_FILE and ARGUS_DB_OWNER_PASSWORD_FILE")
    conn = await db.connect(settings.database_url, OWNER_ROLE, settings.db_owner_password)
    try:
        removed = await prune(conn, settings.master_keys)
    finally:
        await conn.close()
    return f"pruned {sum(removed.values())} events in {len(removed)} orgs"


def main() -> None:
    runner.main(SERVICE, create_app, {"prune": run_prune})


if __name__ == "__main__":
    main()
