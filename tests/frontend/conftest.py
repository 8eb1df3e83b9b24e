"""A headless Chromium driven by Playwright against the live server of tests/conftest.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.settings import PROJECT_ROOT

CHROMIUM = "/usr/bin/chromium"
ARTEFACTS = PROJECT_ROOT / "artifacts" / "screenshots"


@pytest.fixture(scope="session")
def browser():
    """Headless Debian Chromium (Playwright cannot download its own browser here)."""
    playwright = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (make test installs it)")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--disable-quic"],
        )
        yield b
        b.close()


class PageWatch:
    """Console errors, responses and failed requests seen by a page (a request the page cancelled is no failure)."""

    def __init__(self, page, base: str) -> None:
        self.errors: list[str] = []
        self.responses: list[tuple[int, str]] = []
        self.external: list[str] = []
        self.failed: list[tuple[str, str]] = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("response", lambda r: self.responses.append((r.status, r.url)))
        page.on("requestfailed", lambda r: self.failed.append((r.url, r.failure or ""))
                if "ERR_ABORTED" not in (r.failure or "") and r.url.startswith(base) else None)

        def route(r):
            if r.request.url.startswith(base) or r.request.url.startswith("data:"):
                r.continue_()
            else:  # the network is cut off from everything but the server under test
                self.external.append(r.request.url)
                r.abort()

        page.route("**/*", route)


@pytest.fixture
def page_factory(browser, live_server):
    """Open pages at a viewport size, with console and network watched; closes them afterwards."""
    contexts = []

    def open_page(path: str = "/", width: int = 1280, height: int = 800):
        ctx = browser.new_context(viewport={"width": width, "height": height})
        contexts.append(ctx)
        page = ctx.new_page()
        watch = PageWatch(page, live_server)
        page.goto(f"{live_server}{path}")
        page.wait_for_selector("body[data-ready=true]", timeout=30_000)
        return page, watch

    yield open_page
    for ctx in contexts:
        ctx.close()


@pytest.fixture
def screenshot():
    """Save a screenshot under artifacts/screenshots (kept by CI as an artefact)."""

    def save(page, name: str) -> Path:
        ARTEFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTEFACTS / f"{name}.png"
        page.screenshot(path=str(path))
        return path

    return save
