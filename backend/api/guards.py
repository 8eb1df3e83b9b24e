"""Pure ASGI guards in front of every route: trusted hosts, body size, repeated parameters, security headers.

Each answers a bad request itself, in words, before any route or dependency runs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

import orjson

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Longest excerpt of a client's input repeated in an error message.
EXCERPT_CHARS = 80


def excerpt(value: object, limit: int = EXCERPT_CHARS) -> str:
    """A short excerpt of a value for an error message (never the whole of a large input)."""
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


async def send_json(send: Send, status: int, body: dict[str, Any],
                    headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
    """Answer a request with a JSON body."""
    content = orjson.dumps(body)
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(content)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": content})


def host_allowed(host: str, allowed: list[str]) -> bool:
    """True when a Host header value (port ignored, IPv6 in brackets) matches the allowed list."""
    host = host.strip().lower()
    if host.startswith("["):
        name = host[1:host.find("]")] if "]" in host else ""
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    for pattern in allowed:
        pattern = pattern.lower().strip("[]")
        if pattern == "*" or name == pattern or (pattern.startswith("*.") and name.endswith(pattern[1:])):
            return True
    return False


class TrustedHostGuard:
    """400 for a Host header outside M3_ALLOWED_HOSTS, so links never repeat a forged host (DNS rebinding)."""

    def __init__(self, app: ASGIApp, allowed: list[str]) -> None:
        self.app = app
        self.allowed = allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the Host header of HTTP and WebSocket requests."""
        if scope["type"] in ("http", "websocket"):
            host = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"host"), "")
            if not host_allowed(host, self.allowed):
                await send_json(send, 400, {"detail": f"host {excerpt(host, 60)!r} is not served here; allowed "
                                                      "hosts are set by M3_ALLOWED_HOSTS"})
                return
        await self.app(scope, receive, send)


class BodyTooLarge(Exception):
    """A request body went past the limit while it was read."""


class BodyLimit:
    """413 for a request body larger than M3_MAX_BODY_BYTES (declared or streamed)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _detail(self) -> dict[str, Any]:
        return {"detail": f"the request body is larger than {self.max_bytes} bytes (M3_MAX_BODY_BYTES)"}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse a declared length over the limit at once; count the bytes of a streamed body."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = next((v for k, v in scope.get("headers", []) if k == b"content-length"), None)
        if declared is not None:
            try:
                too_large = int(declared) > self.max_bytes
            except ValueError:
                await send_json(send, 400, {"detail": "the Content-Length header is not a number"})
                return
            if too_large:
                await send_json(send, 413, self._detail())
                return
        seen = 0
        started = False

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except BodyTooLarge:
            if started:
                raise
            await send_json(send, 413, self._detail())


class RepeatedParameterGuard:
    """422 for a query parameter given more than once, unless the route takes a list of it.

    ``species=gold&species=zinc`` would otherwise silently mean zinc only.
    """

    def __init__(self, app: ASGIApp, list_parameters: Callable[[], set[str]]) -> None:
        self.app = app
        self.list_parameters = list_parameters
        self._lists: set[str] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Count the names of the query string."""
        query = scope.get("query_string", b"") if scope["type"] == "http" else b""
        if query and b"&" in query:
            seen: set[str] = set()
            repeated: list[str] = []
            for name, _ in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
                if name in seen and name not in repeated:
                    repeated.append(name)
                seen.add(name)
            if repeated:
                if self._lists is None:
                    self._lists = self.list_parameters()
                bad = [n for n in repeated if n not in self._lists]
                if bad:
                    await send_json(send, 422, {
                        "detail": f"query parameter {excerpt(bad[0], 40)!r} is given more than once; give it once "
                                  "(a comma-separated list where the parameter takes several values)",
                        "parameter": excerpt(bad[0], 40)})
                    return
        await self.app(scope, receive, send)


def list_query_parameters(openapi: dict[str, Any]) -> set[str]:
    """Names of the query parameters that some operation of an OpenAPI schema takes as an array."""
    names: set[str] = set()
    for item in openapi.get("paths", {}).values():
        for operation in item.values():
            for param in operation.get("parameters", []) if isinstance(operation, dict) else []:
                schema = param.get("schema", {})
                kinds = [schema, *schema.get("anyOf", [])]
                if param.get("in") == "query" and any(k.get("type") == "array" for k in kinds):
                    names.add(param["name"])
    return names


#: The Content-Security-Policy of the map page (scripts and styles from this origin only).
PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:{img}; "
            "connect-src 'self'; font-src 'self' data:; worker-src 'self' blob:; object-src 'none'; "
            "base-uri 'self'; form-action 'self'; frame-ancestors 'none'")
#: The API documentation pages start their viewer with an inline script.
DOCS_CSP = PAGE_CSP.replace("script-src 'self'", "script-src 'self' 'unsafe-inline'")
DOCS_PATHS = ("/docs", "/redoc")


class SecurityHeaders:
    """``nosniff`` on every response; CSP, frame-ancestors and referrer policy on every HTML response."""

    def __init__(self, app: ASGIApp, img_sources: str = "") -> None:
        self.app = app
        self.page_csp = PAGE_CSP.format(img=img_sources).encode()
        self.docs_csp = DOCS_CSP.format(img=img_sources).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Add the headers to the response start."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        csp = self.docs_csp if path.startswith(DOCS_PATHS) else self.page_csp

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", [])
                           if k.lower() not in (b"x-content-type-options",)]
                headers.append((b"x-content-type-options", b"nosniff"))
                content_type = next((v for k, v in headers if k.lower() == b"content-type"), b"")
                if content_type.startswith(b"text/html"):
                    headers += [(b"content-security-policy", csp), (b"x-frame-options", b"DENY"),
                                (b"referrer-policy", b"same-origin"),
                                (b"cross-origin-opener-policy", b"same-origin")]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


class Pool:
    """At most ``concurrency`` requests at once, at most ``queue`` more waiting (asyncio, one event loop)."""

    def __init__(self, name: str, concurrency: int, queue: int, wait_s: float, retry_after_s: int) -> None:
        import asyncio

        self.name = name
        self.concurrency = concurrency
        self.queue = queue
        self.wait_s = wait_s
        self.retry_after_s = retry_after_s
        self.in_flight = 0
        self.refused = 0
        self._semaphore = asyncio.Semaphore(concurrency)


class LoadLimiter:
    """Heavy routes run through bounded pools; when a pool and its queue are full the answer is 429 at once.

    ``pools`` maps a pool to a predicate on (method, path). A request waits at most ``wait_s`` for a slot
    (then 429); every 429 carries ``Retry-After``. Shed load is a 429, not a 5xx: the server is sound, the
    client is asked to come back later.
    """

    def __init__(self, app: ASGIApp, pools: list[tuple[Pool, Callable[[str, str], bool]]]) -> None:
        self.app = app
        self.pools = pools

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Admit, queue or refuse a request of a pooled route."""
        import asyncio

        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method, path = scope.get("method", ""), scope.get("path", "")
        pool = next((p for p, matches in self.pools if matches(method, path)), None)
        if pool is None:
            await self.app(scope, receive, send)
            return
        if pool.in_flight >= pool.concurrency + pool.queue:
            await self._busy(send, pool)
            return
        pool.in_flight += 1
        try:
            try:
                await asyncio.wait_for(pool._semaphore.acquire(), timeout=pool.wait_s)
            except TimeoutError:
                await self._busy(send, pool)
                return
            try:
                await self.app(scope, receive, send)
            finally:
                pool._semaphore.release()
        finally:
            pool.in_flight -= 1

    @staticmethod
    async def _busy(send: Send, pool: Pool) -> None:
        pool.refused += 1
        await send_json(send, 429, {"detail": f"the server is busy with {pool.name} requests ({pool.concurrency} at "
                                              f"once, {pool.queue} waiting); retry after {pool.retry_after_s} s"},
                        headers=[(b"retry-after", str(pool.retry_after_s).encode())])
