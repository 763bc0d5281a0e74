"""Run the tenant-api service (`python -m` or its console script), settings from the environment."""

from __future__ import annotations

from argus_shared import runner
from argus_tenant_api import SERVICE
from argus_tenant_api.app import create_app


def main() -> None:
    runner.main(SERVICE, create_app)


if __name__ == "__main__":
    main()
