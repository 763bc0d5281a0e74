"""Run the audit service (`python -m` or its console script), settings from the environment."""

from __future__ import annotations

from argus_audit.app import SERVICE, create_app
from argus_shared.runner import run_service


def main() -> None:
    run_service(SERVICE, create_app)


if __name__ == "__main__":
    main()
