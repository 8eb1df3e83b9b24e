"""An in-process cache of rendered tiles keyed by layer version, as pure ASGI middleware."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl, urlencode

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


Entry = tuple[int, list[tuple[bytes, bytes]], bytes]


def entry_bytes(value: Entry) -> int:
    """Bytes an entry holds (body and headers, plus a fixed overhead)."""
    return len(value[2]) + sum(len(k) + len(v) for k, v in value[1]) + 256


class TileCache:
    """A thread-safe LRU of (status, headers, body) keyed by (version token, path, normalised query).

    Bounded in bytes (``max_bytes``) and in entries; a response larger than an eighth of the byte bound is
    not kept, so a few large tiles never push out every small one.
    """

    def __init__(self, entries: int, max_bytes: int = 64 * 2**20) -> None:
        self.entries = entries
        self.max_bytes = max_bytes
        self.bytes = 0
        self._data: OrderedDict[tuple[str, str, bytes], Entry] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple[str, str, bytes]) -> tuple[int, list[tuple[bytes, bytes]], bytes] | None:
        """A cached response, refreshed as most recently used."""
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
                self.hits += 1
            else:
                self.misses += 1
            return value

    def put(self, key: tuple[str, str, bytes], value: tuple[int, list[tuple[bytes, bytes]], bytes]) -> None:
        """Store a response, evicting the least recently used beyond the limit."""
        size = entry_bytes(value)
        if self.entries <= 0 or size > self.max_bytes // 8:
            return
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self.bytes -= entry_bytes(old)
            self._data[key] = value
            self.bytes += size
            while len(self._data) > self.entries or self.bytes > self.max_bytes:
                _, dropped = self._data.popitem(last=False)
                self.bytes -= entry_bytes(dropped)

    def clear(self) -> None:
        """Drop everything."""
        with self._lock:
            self._data.clear()
            self.bytes = 0


def normalise_query(query: bytes, known: set[str] | None) -> bytes | None:
    """The query string with its parameters sorted; None when it names a parameter outside ``known``.

    A request with an unknown parameter is neither answered from nor stored in the cache (the route
    validates it), so cache-busting parameters add no entries.
    """
    pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
    if known is not None and any(k not in known for k, _ in pairs):
        return None
    return urlencode(sorted(pairs)).encode("latin-1")


class TileCacheMiddleware:
    """Serve repeated ``/tiles/{layer}/tiles/...`` GETs from a :class:`TileCache`.

    The key holds the layer's version token (``v<N>`` or a temporary layer id), so tiles of a newly
    published version never come from the cache of an older one.
    """

    def __init__(self, app: ASGIApp, cache: Callable[[], TileCache | None], resolve: Callable[[Scope, str],
                 str | None], prefix: str = "/tiles/", parameters: Callable[[], set[str]] | None = None) -> None:
        self.app = app
        self.cache = cache
        self.resolve = resolve
        self.prefix = prefix
        self.parameters = parameters
        self._known: set[str] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer from the cache or pass through and remember a 200."""
        path = scope.get("path", "")
        if scope["type"] != "http" or scope.get("method") != "GET" or not path.startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        parts = path[len(self.prefix):].split("/")
        cache = self.cache()
        token = self.resolve(scope, parts[0]) if len(parts) > 2 and parts[1] == "tiles" and cache else None
        if token is None or cache is None:
            await self.app(scope, receive, send)
            return
        if self._known is None and self.parameters is not None:
            self._known = self.parameters()
        query = normalise_query(scope.get("query_string", b""), self._known)
        if query is None:
            await self.app(scope, receive, send)
            return
        key = (token, path, query)
        hit = cache.get(key)
        if hit is not None:
            status, headers, body = hit
            await send({"type": "http.response.start", "status": status,
                        "headers": [*headers, (b"x-tile-cache", b"hit")]})
            await send({"type": "http.response.body", "body": body})
            return
        started: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            """Forward the response and keep a copy."""
            if message["type"] == "http.response.start":
                started.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body") and started.get("status") == 200:
                    headers = [(k, v) for k, v in started.get("headers", []) if k.lower() != b"x-tile-cache"]
                    cache.put(key, (200, headers, b"".join(chunks)))
            await send(message)

        await self.app(scope, receive, capture)
