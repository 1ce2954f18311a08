"""The built site, as a reader's browser sees it.

Builds the book with Jupyter Book (warnings are errors), serves ``_build/html`` on
127.0.0.1 and loads every page of the table of contents in headless Chromium:
math is typeset by the locally served MathJax (``mjx-container`` elements in the
DOM, no raw ``$$``), the figures stored in the notebooks are on the pages and
served, and no request leaves 127.0.0.1 (Chromium's own network log says so).

Without a Chromium binary the test is skipped, unless ``CL_REQUIRE_BROWSER=1``
(set by CI), where a missing browser is a failure.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
HTML = ROOT / "_build" / "html"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
    "--disable-default-apps",
    "--disable-extensions",
]


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _toc_pages() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    pages = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                pages.append(entry["file"])
            walk(entry.get("sections"))

    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    walk(toc.get("chapters"))
    return pages


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    requested: list[str] = []

    def log_message(self, fmt, *args):  # record instead of printing
        _QuietHandler.requested.append(self.path)


@pytest.fixture(scope="module")
def site():
    browser = _chromium()
    if browser is None:
        if os.environ.get("CL_REQUIRE_BROWSER") == "1":
            pytest.fail("CL_REQUIRE_BROWSER=1 but no Chromium binary was found (apt-get install chromium)")
        pytest.skip("no Chromium binary (apt-get install chromium); set CL_REQUIRE_BROWSER=1 to make this a failure")
    if not (ROOT / "book" / "_mathjax" / "mathjax" / "tex-mml-chtml.js").is_file():
        pytest.fail("MathJax is missing: run `make book/_mathjax/mathjax/tex-mml-chtml.js` (make test does)")
    jb = Path(sys.executable).with_name("jupyter-book")
    build = subprocess.run(
        [str(jb), "build", str(ROOT), "-W", "--keep-going", "-n"], capture_output=True, text=True, timeout=900
    )
    assert build.returncode == 0, f"jupyter-book build failed:\n{build.stdout[-4000:]}\n{build.stderr[-4000:]}"
    handler = functools.partial(_QuietHandler, directory=str(HTML))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield browser, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _page_requests(netlog: Path) -> list[str]:
    """URLs requested by the page (Chromium's own service traffic has no page initiator)."""
    log = json.loads(netlog.read_text(errors="replace"))
    start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    urls = []
    for event in log["events"]:
        params = event.get("params") or {}
        if event["type"] == start_job and "url" in params:
            initiator = params.get("initiator", "")
            if initiator.startswith("http://127.0.0.1") or urlparse(params["url"]).hostname == "127.0.0.1":
                urls.append(params["url"])
    return urls


def _load(browser: str, url: str) -> tuple[str, list[str]]:
    """The DOM after scripts ran, and every URL the page requested."""
    with tempfile.TemporaryDirectory() as tmp:
        netlog = Path(tmp) / "net.json"
        cmd = [
            browser,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={tmp}/profile",
            f"--log-net-log={netlog}",
            "--virtual-time-budget=8000",
            "--dump-dom",
            url,
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        urls = _page_requests(netlog)
    return out.stdout, urls


def test_every_page_renders_offline(site):
    browser, base = site
    pages = _toc_pages()
    assert any(p.startswith("chapters/") for p in pages), "the table of contents lists no chapter"
    for page in pages:
        dom, urls = _load(browser, f"{base}/{page}.html")
        assert "<main" in dom and "404" not in dom[:300], f"{page}: page missing"
        leaving = sorted({u for u in urls if urlparse(u).scheme in ("http", "https", "ws", "wss")
                          and urlparse(u).hostname != "127.0.0.1"})
        assert not leaving, f"{page}: requests left 127.0.0.1: {leaving[:5]}"
        text = re.sub(r"<[^>]+>", " ", dom)
        assert "$$" not in text, f"{page}: raw $$ math left untypeset"
        if page.startswith("chapters/") or page == "book/notation":  # pages with formulas
            assert any("mathjax/tex-mml-chtml.js" in u for u in urls), f"{page}: local MathJax was not loaded"
            assert "mjx-container" in dom, f"{page}: no math typeset by MathJax"
        if page.startswith("chapters/"):
            images = re.findall(r"<img[^>]+src=\"([^\"]*_images/[^\"]+\.png)\"", dom)
            assert images, f"{page}: no figure on the page"
            fetched = [u for u in urls if u.endswith(".png")]
            assert len(fetched) >= len(set(images)) > 0, f"{page}: figures not served ({images[:3]})"


def test_bibliography_and_launch_buttons(site):
    browser, base = site
    dom, _ = _load(browser, f"{base}/book/bibliography.html")
    assert "simcse" in dom.lower() and "momentum contrast" in dom.lower(), "bibliography not rendered"
    chapter = next(p for p in _toc_pages() if p.startswith("chapters/"))
    dom, _ = _load(browser, f"{base}/{chapter}.html")
    assert "colab.research.google.com" in dom, "no Colab launch link on a chapter"
