"""Run the webhooks service (`python -m` or its console script), settings from the environment."""

from __future__ import annotations

from argus_shared import runner
from argus_webhooks import SERVICE
from argus_webhooks.app import create_app


def main() -> None:
    runner.main(SERVICE, create_app)


if __name__ == "__main__":
    main()
