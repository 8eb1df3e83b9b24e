"""The GeoJSON media type, for responses whose bodies are GeoJSON (RFC 7946)."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.responses import JSONResponse


class GeoJSONResponse(JSONResponse):
    """A GeoJSON body (bytes already serialised, or an object serialised with orjson) as ``application/geo+json``.

    A JSONResponse subclass, so the OpenAPI document shows the route's response model under this media type.
    """

    media_type = "application/geo+json"

    def render(self, content: Any) -> bytes:
        """The body bytes."""
        return content if isinstance(content, bytes) else orjson.dumps(content)
