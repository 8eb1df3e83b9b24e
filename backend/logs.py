"""Logging set up once, for the CLI and the server."""

from __future__ import annotations

import logging


def configure_logging(level: str = "INFO") -> None:
    """Plain timestamped logs on stderr."""
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
