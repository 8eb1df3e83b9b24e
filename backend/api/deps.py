"""Shared FastAPI dependencies (Annotated aliases)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

import sqlalchemy as sa
from fastapi import Depends, Request

from backend.settings import Settings


def get_settings(request: Request) -> Settings:
    """The settings the app was created with."""
    return request.app.state.settings


def get_engine(request: Request) -> sa.Engine:
    """The app's engine (opened in the lifespan)."""
    return request.app.state.engine


def get_connection(engine: Annotated[sa.Engine, Depends(get_engine)]) -> Iterator[sa.Connection]:
    """A pooled connection for one request."""
    with engine.connect() as conn:
        yield conn


SettingsDep = Annotated[Settings, Depends(get_settings)]
EngineDep = Annotated[sa.Engine, Depends(get_engine)]
ConnDep = Annotated[sa.Connection, Depends(get_connection)]
