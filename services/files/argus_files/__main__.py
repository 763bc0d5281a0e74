"""Run the files service (`python -m` or its console script), settings from the environment."""

from __future__ import annotations

from argus_files.app import SERVICE, create_app
from argus_shared import runner


def main() -> None:
    runner.main(SERVICE, create_app)


if __name__ == "__main__":
    main()
