"""`python -m argus_tenant_api` / `argus-tenant-api`: run the tenant-api service with settings from the environment."""

from __future__ import annotations

from argus_shared.runner import run_service
from argus_tenant_api.app import SERVICE, create_app


def main() -> None:
    run_service(SERVICE, create_app)


if __name__ == "__main__":
    main()
