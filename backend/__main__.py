"""Entry point: `python -m backend` reads the settings, sets up logging and runs the server."""

from __future__ import annotations

import asyncio
import logging
import sys

from pydantic import ValidationError

from backend.config import Settings
from backend.server import serve


def main() -> int:
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"backend: invalid settings:\n{exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    asyncio.run(serve(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
