"""A headless Debian Chromium driven by Playwright (no browser download: the system binary).

    with open_browser() as browser:
        result = load(browser, path)   # console errors, broken images, links, dialogs
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator
from urllib.parse import unquote, urlparse

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage"]


def unavailable() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if CHROMIUM is None:
        return "chromium is not installed (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install playwright; no `playwright install` needed)"
    return None


@contextlib.contextmanager
def open_browser() -> Iterator:
    from playwright.sync_api import sync_playwright
    profile = tempfile.mkdtemp(prefix="sprites-chromium-")
    try:
        with sync_playwright() as pw:
            context = pw.chromium.launch_persistent_context(
                profile, executable_path=CHROMIUM, headless=True, args=FLAGS,
                accept_downloads=True, viewport={"width": 1360, "height": 900})
            try:
                yield context
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


@dataclass
class PageCheck:
    url: str
    title: str = ""
    errors: list[str] = field(default_factory=list)        # console errors and page exceptions
    dialogs: list[str] = field(default_factory=list)       # alert/confirm/prompt fired
    broken_images: list[str] = field(default_factory=list)
    images: int = 0
    links: list[str] = field(default_factory=list)         # absolute hrefs of <a> elements
    text: str = ""


def load(context, path: Path | str, screenshot: Path | None = None, full_page: bool = True) -> PageCheck:
    """Open a file (or URL), wait for images, and collect what a reader would notice."""
    url = Path(path).resolve().as_uri() if not str(path).startswith(("file:", "http")) else str(path)
    page = context.new_page()
    check = PageCheck(url)
    page.on("console", lambda m: check.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: check.errors.append(str(e)))
    page.on("requestfailed", lambda r: check.errors.append(f"failed: {r.url}"))

    def on_dialog(dialog):
        check.dialogs.append(dialog.message)
        dialog.dismiss()
    page.on("dialog", on_dialog)
    try:
        page.goto(url, wait_until="load")
        page.wait_for_function("Array.from(document.images).every(i => i.complete)", timeout=15000)
        check.title = page.title()
        check.images = page.evaluate("document.images.length")
        check.broken_images = page.evaluate(
            "Array.from(document.images).filter(i => !(i.naturalWidth > 0)).map(i => i.getAttribute('src'))")
        check.links = page.evaluate(  # SVG <a> too: resolve the attribute against the page
            "Array.from(document.querySelectorAll('a[href]')).map(a => new URL(a.getAttribute('href'), document.baseURI).href)")
        check.text = page.inner_text("body")
        if screenshot is not None:
            page.screenshot(path=str(screenshot), full_page=full_page)
    finally:
        page.close()
    return check


def local_target(href: str) -> Path | None:
    """The file a file:// link points to (fragment dropped), or None for other schemes."""
    parsed = urlparse(href)
    if parsed.scheme != "file":
        return None
    return Path(unquote(parsed.path))
