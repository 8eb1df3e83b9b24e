"""The FastAPI application: REST API, health, and (later) tiles, admin and the static map page."""
