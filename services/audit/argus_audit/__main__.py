"""`python -m argus_audit` / `argus-audit`: run the audit service with settings from the environment."""

from __future__ import annotations

from argus_shared.runner import run_service
from argus_audit.app import SERVICE, create_app


def main() -> None:
    run_service(SERVICE, create_app)


if __name__ == "__main__":
    main()
