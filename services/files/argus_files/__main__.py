"""Run the files service (`python -m` or its console script), settings from the environment.

`python -m argus_files rewrap-keys` re-wraps every data key under the current master key (run
it after `argus keys rotate master-keys`; the content is not re-encrypted). `python -m
argus_files sweep` removes what deletions and crashed uploads left in the storage backend.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from argus_files import SERVICE, deletion, keys
from argus_files.app import create_app
from argus_files.config import FilesConfig
from argus_files.metrics import FileMetrics
from argus_files.segments import AES_GCM
from argus_files.storage import storage_for
from argus_files.store import Store
from argus_shared import db, runner
from argus_shared.settings import ConfigError, Settings


async def rewrap_keys(settings: Settings) -> str:
    if settings.master_keys is None:
        raise ConfigError("ARGUS_MASTER_KEYS_FILE is not set (nor ARGUS_MASTER_KEYS)")
    pool = await db.create_pool(settings.database_url, settings.db_role, settings.db_password,
                                schema=settings.schema, max_size=2)
    try:
        done, failed = await keys.rewrap_all(pool, settings.master_keys)
    finally:
        await pool.close()
    if failed:
        runner.fail(f"re-wrapped {done} data keys; {failed} could not be unwrapped (see the log)",
                    1)
    return f"re-wrapped {done} data keys under master key {settings.master_keys.current}"


async def sweep(settings: Settings) -> str:
    if settings.master_keys is None:
        raise ConfigError("ARGUS_MASTER_KEYS_FILE is not set (nor ARGUS_MASTER_KEYS)")
    config = FilesConfig.from_env()
    pool = await db.create_pool(settings.database_url, settings.db_role, settings.db_password,
                                schema=settings.schema, max_size=2)
    storage = storage_for(config)
    try:
        await storage.start()
        store = Store(pool, storage, settings.master_keys, AES_GCM, config,
                      FileMetrics.create(CollectorRegistry()))
        done = await deletion.sweep(store)
    finally:
        await storage.close()
        await pool.close()
    return f"swept {done} objects"


def main() -> None:
    runner.main(SERVICE, create_app, {"rewrap-keys": rewrap_keys, "sweep": sweep})


if __name__ == "__main__":
    main()
