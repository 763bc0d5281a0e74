"""Run the auth service (`python -m` or its console script), settings from the environment.

`python -m argus_auth rotate-signing-key` adds a new access-token signing key and retires the
current one (it stays published until the tokens it signed have expired).
`python -m argus_auth normalise-emails` rewrites stored emails into the normal form of
`argus_shared.emails` and lists the accounts it cannot (see migrations/0003_email_normal_form.sql).
"""

from __future__ import annotations

from argus_auth import SERVICE, accounts
from argus_auth.app import create_app
from argus_auth.config import AuthConfig
from argus_auth.signing import SigningKeys
from argus_shared import db, runner
from argus_shared.settings import ConfigError, Settings


async def rotate_signing_key(settings: Settings) -> str:
    if settings.master_keys is None:
        raise ConfigError("ARGUS_MASTER_KEYS_FILE is not set (nor ARGUS_MASTER_KEYS)")
    pool = await db.create_pool(settings.database_url, settings.db_role, settings.db_password,
                                schema=settings.schema, max_size=2)
    try:
        keys = SigningKeys(pool, settings.master_keys, AuthConfig().access_ttl)
        await keys.load()
        kid = await keys.rotate()
    finally:
        await pool.close()
    return f"new signing key {kid}; the previous one stays published until its tokens expire"


async def normalise_emails(settings: Settings) -> str:
    pool = await db.create_pool(settings.database_url, settings.db_role, settings.db_password,
                                schema=settings.schema, max_size=1)
    try:
        async with pool.acquire() as conn:
            rewritten, problems = await accounts.normalise_stored_emails(conn)
    finally:
        await pool.close()
    return "\n".join([f"{rewritten} stored emails rewritten in their normal form; "
                      f"{len(problems)} left for a person", *problems])


def main() -> None:
    runner.main(SERVICE, create_app, {"rotate-signing-key": rotate_signing_key,
                                      "normalise-emails": normalise_emails})


if __name__ == "__main__":
    main()
