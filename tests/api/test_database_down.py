from fastapi.testclient import TestClient

from backend.api.app import create_app
from backend.settings import Settings


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_database_gives_503_not_500():
    url = f"postgresql+psycopg://m3@127.0.0.1:{free_port()}/m3"
    with TestClient(create_app(Settings(database_url=url))) as c:
        h = c.get("/healthz")
        assert h.status_code == 503 and h.json()["database"].startswith("unavailable")
        r = c.get("/api/sites", params={"limit": 1})
        assert r.status_code == 503 and "unavailable" in r.json()["detail"]
        assert r.headers["retry-after"] == "5"
