"""The built site, as a reader's browser sees it, on a desktop (1400 px) and a phone (420 px).

Builds the book with Jupyter Book (warnings are errors), serves ``_build/html`` on
127.0.0.1 and drives headless Chromium over the DevTools protocol (``--remote-debugging-pipe``:
no extra package). For every page of the table of contents:

* math is typeset by the locally served MathJax (``mjx-container`` elements, no raw ``$$``),
  the figures stored in the notebooks are on the pages and served, no request leaves
  127.0.0.1, no request fails (favicon included) and no script raises;
* at 420 px nothing scrolls sideways except a code block, an output or a table inside its
  own scrolling box;
* at 420 px the menu button opens the chapter list (and at 1400 px it hides the sidebar);
* there is one search box, not two, and no empty index page.

The landing page shows the figure drawn by ``tools/figures.py`` and the chapter overview,
whose Colab links follow ``repository`` in ``_config.yml``.

Without a Chromium binary the test is skipped, unless ``CL_REQUIRE_BROWSER=1``
(set by CI), where a missing browser is a failure.
"""

from __future__ import annotations

import fcntl
import functools
import http.server
import json
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
HTML = ROOT / "_build" / "html"
# Chapter pages that are lists of tools with runnable checks, where no figure would say more.
PAGES_WITHOUT_FIGURES = {"chapters/12_tools"}
DESKTOP, PHONE = 1400, 420
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
    "--remote-debugging-pipe",
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


# ----------------------------------------------------------------------------- the browser
class Browser:
    """Headless Chromium driven over the DevTools protocol on a pipe (fds 3 and 4)."""

    def __init__(self, binary: str):
        self._tmp = tempfile.mkdtemp()
        to_us_r, to_us_w = os.pipe()
        to_it_r, to_it_w = os.pipe()

        def child_fds():  # Chromium reads commands on fd 3 and writes replies on fd 4
            a = fcntl.fcntl(to_it_r, fcntl.F_DUPFD, 10)
            b = fcntl.fcntl(to_us_w, fcntl.F_DUPFD, 10)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen(
            [binary, *CHROMIUM_FLAGS, f"--user-data-dir={self._tmp}/profile", "about:blank"],
            pass_fds=(3, 4), preexec_fn=child_fds, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        os.close(to_us_w)
        os.close(to_it_r)
        self._r, self._w = to_us_r, to_it_w
        self._buf, self._id, self.events = b"", 0, []
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Network"):
            self.send(f"{domain}.enable", session=self.session)

    def _message(self, timeout: float) -> dict:
        while b"\0" not in self._buf:
            ready, _, _ = select.select([self._r], [], [], timeout)
            if not ready:
                raise TimeoutError(f"Chromium sent nothing for {timeout} s")
            chunk = os.read(self._r, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 60):
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        while True:
            reply = self._message(timeout)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def page(self, method: str, params: dict | None = None):
        return self.send(method, params, session=self.session)

    def js(self, expression: str):
        """Evaluate in the page (promises awaited); returns the value."""
        out = self.page("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in out:
            raise RuntimeError(f"{expression[:80]}: {out['exceptionDetails']}")
        return out["result"].get("value")

    def _wait_for(self, method: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        seen = len(self.events)
        while True:
            if any(e.get("method") == method for e in self.events[seen:]):
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {method} within {timeout} s")
            self.events.append(self._message(left))

    def open(self, url: str, width: int, height: int = 900) -> dict:
        """Load ``url`` at ``width`` px; returns the DOM (after MathJax), requests, failures and JS errors."""
        self.page("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
        self.events.clear()
        self.page("Page.navigate", {"url": url})
        self._wait_for("Page.loadEventFired")
        self.js("new Promise(r => setTimeout(r, 300))")
        self.js("(window.MathJax && MathJax.startup && MathJax.startup.promise) "
                "? MathJax.startup.promise.then(() => true) : true")
        self.js("new Promise(r => setTimeout(r, 200))")
        requests = [e["params"]["request"]["url"] for e in self.events if e.get("method") == "Network.requestWillBeSent"]
        failed = [f"{e['params']['response']['status']} {e['params']['response']['url']}"
                  for e in self.events if e.get("method") == "Network.responseReceived"
                  and e["params"]["response"]["status"] >= 400]
        failed += [f"{e['params'].get('errorText')} (request {e['params'].get('requestId')})"
                   for e in self.events if e.get("method") == "Network.loadingFailed"
                   and not e["params"].get("canceled")]
        errors = [e["params"]["exceptionDetails"].get("exception", {}).get("description", "")[:200]
                  or e["params"]["exceptionDetails"].get("text", "")
                  for e in self.events if e.get("method") == "Runtime.exceptionThrown"]
        return {"dom": self.js("document.documentElement.outerHTML"), "requests": requests,
                "failed": failed, "errors": errors}

    def click(self, selector: str) -> None:
        """A real mouse click in the middle of the first VISIBLE element matching ``selector``."""
        box = self.js(f"""(() => {{
            const el = [...document.querySelectorAll({json.dumps(selector)})]
              .find(e => e.checkVisibility({{visibilityProperty: true}}) && e.getBoundingClientRect().width > 0);
            if (!el) return null;
            const r = el.getBoundingClientRect();
            return [r.x + r.width / 2, r.y + r.height / 2];
        }})()""")
        assert box is not None, f"no visible {selector} to click"
        for kind in ("mousePressed", "mouseReleased"):
            self.page("Input.dispatchMouseEvent", {"type": kind, "x": box[0], "y": box[1], "button": "left", "clickCount": 1})
        self.js("new Promise(r => setTimeout(r, 500))")

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=5)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        os.close(self._r)
        os.close(self._w)
        shutil.rmtree(self._tmp, ignore_errors=True)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, fmt, *args):
        pass


@pytest.fixture(scope="module")
def site():
    binary = _chromium()
    if binary is None:
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
    threading.Thread(target=server.serve_forever, daemon=True).start()
    browser = Browser(binary)
    yield browser, f"http://127.0.0.1:{server.server_address[1]}"
    browser.close()
    server.shutdown()


# What scrolls sideways outside a box of its own: the innermost visible elements that stick out
# of the page while no ancestor of theirs clips or scrolls within the page.
OVERFLOW_JS = r"""(() => {
  const W = document.documentElement.clientWidth;
  const contained = (el) => {
    for (let a = el; a && a !== document.body; a = a.parentElement) {
      const ox = getComputedStyle(a).overflowX;
      if ((ox === "auto" || ox === "scroll" || ox === "hidden" || ox === "clip")
          && a.getBoundingClientRect().right <= W + 1) return true;
    }
    return false;
  };
  const sticksOut = (el) => {
    const r = el.getBoundingClientRect();
    return r.width > 0 && r.right > W + 1 && el.checkVisibility({visibilityProperty: true}) && !contained(el);
  };
  const out = [];
  for (const el of document.querySelectorAll("body *")) {
    if (!sticksOut(el) || [...el.children].some(sticksOut)) continue;
    out.push(`<${el.tagName.toLowerCase()} class="${el.className}"> ends at ${Math.round(el.getBoundingClientRect().right)} px: `
             + (el.textContent || "").trim().slice(0, 70));
  }
  return {scrollWidth: document.documentElement.scrollWidth, width: W, offenders: out.slice(0, 10)};
})()"""


def test_every_page_renders_offline(site):
    browser, base = site
    pages = _toc_pages()
    assert any(p.startswith("chapters/") for p in pages), "the table of contents lists no chapter"
    for page in pages:
        got = browser.open(f"{base}/{page}.html", DESKTOP)
        dom, urls = got["dom"], got["requests"]
        assert "<main" in dom and "404" not in dom[:300], f"{page}: page missing"
        leaving = sorted({u for u in urls if urlparse(u).scheme in ("http", "https", "ws", "wss")
                          and urlparse(u).hostname != "127.0.0.1"})
        assert not leaving, f"{page}: requests left 127.0.0.1: {leaving[:5]}"
        assert not got["failed"], f"{page}: failed requests: {got['failed'][:5]}"
        assert not got["errors"], f"{page}: script errors: {got['errors'][:3]}"
        text = re.sub(r"<[^>]+>", " ", dom)
        assert "$$" not in text, f"{page}: raw $$ math left untypeset"
        if page.startswith("chapters/") or page == "book/notation":  # pages with formulas
            assert any("mathjax/tex-mml-chtml.js" in u for u in urls), f"{page}: local MathJax was not loaded"
            assert "mjx-container" in dom, f"{page}: no math typeset by MathJax"
        if page.startswith("chapters/") and page not in PAGES_WITHOUT_FIGURES:
            images = re.findall(r"<img[^>]+src=\"([^\"]*_images/[^\"]+\.png)\"", dom)
            assert images, f"{page}: no figure on the page"
            fetched = [u for u in urls if u.endswith(".png")]
            assert len(fetched) >= len(set(images)) > 0, f"{page}: figures not served ({images[:3]})"


def test_nothing_scrolls_sideways_on_a_phone(site):
    browser, base = site
    bad = {}
    for page in _toc_pages():
        browser.open(f"{base}/{page}.html", PHONE)
        got = browser.js(OVERFLOW_JS)
        if got["scrollWidth"] > got["width"] + 1 or got["offenders"]:
            bad[page] = f"page {got['scrollWidth']} px wide in a {got['width']} px window; " + "; ".join(got["offenders"])
    assert not bad, "pages that scroll sideways at 420 px:\n" + "\n".join(f"  {p}: {v}" for p, v in bad.items())


SIDEBAR_LINKS_VISIBLE = """(() => {
  const links = [...document.querySelectorAll('.bd-sidebar-primary a.reference, #pst-primary-sidebar-modal a.reference')]
    .filter(a => a.checkVisibility({visibilityProperty: true}));
  const shown = links.filter(a => { const r = a.getBoundingClientRect();
                                    return r.width > 0 && r.left >= 0 && r.right <= window.innerWidth; });
  return shown.map(a => a.getAttribute('href'));
})()"""


@pytest.mark.parametrize("page", ["book/intro", "chapters/01_getting_started"])
def test_menu_button_opens_the_chapter_list_on_a_phone(site, page):
    browser, base = site
    browser.open(f"{base}/{page}.html", PHONE)
    assert not browser.js(SIDEBAR_LINKS_VISIBLE), f"{page}: at {PHONE} px the chapter list shows before the menu is opened"
    browser.click(".primary-toggle")
    shown = browser.js(SIDEBAR_LINKS_VISIBLE)
    chapters = [h for h in shown if "01_getting_started" in h or "02_principles" in h]
    assert chapters, f"{page}: at {PHONE} px the menu button did not open the chapter list (visible links: {shown[:5]})"


def test_contents_button_opens_the_page_outline_on_a_phone(site):
    browser, base = site
    outline = """[...document.querySelectorAll('.bd-sidebar-secondary a.nav-link, #pst-secondary-sidebar-modal a.nav-link')]
      .filter(a => { const r = a.getBoundingClientRect();
                     return a.checkVisibility({visibilityProperty: true}) && r.width > 0
                            && r.left >= 0 && r.right <= window.innerWidth; }).length"""
    browser.open(f"{base}/chapters/01_getting_started.html", PHONE)
    assert browser.js(outline) == 0, "the page outline shows at 420 px before its button is pressed"
    browser.click(".secondary-toggle")
    assert browser.js(outline) > 0, "at 420 px the contents button did not open the page outline"


def test_menu_button_hides_the_sidebar_on_a_desktop(site):
    browser, base = site
    browser.open(f"{base}/chapters/01_getting_started.html", DESKTOP)
    assert browser.js(SIDEBAR_LINKS_VISIBLE), "the sidebar is not shown at 1400 px"
    browser.click(".primary-toggle")
    assert not browser.js(SIDEBAR_LINKS_VISIBLE), "at 1400 px the menu button did not hide the sidebar"


VISIBLE_SEARCH = """[...document.querySelectorAll('.search-button-field, .search-button__button, input[type=search]')]
  .filter(e => e.checkVisibility({visibilityProperty: true}) && e.getBoundingClientRect().width > 0).length"""


def test_one_search_box_and_no_empty_index(site):
    browser, base = site
    for width in (DESKTOP, PHONE):
        got = browser.open(f"{base}/chapters/01_getting_started.html", width)
        assert browser.js(VISIBLE_SEARCH) == 1, f"at {width} px: {browser.js(VISIBLE_SEARCH)} search boxes, want 1"
        assert "genindex" not in got["dom"], "a link to the (empty) general index"
    assert not (HTML / "genindex.html").exists(), "genindex.html is built (html_use_index should be false)"


def test_landing_page(site):
    browser, base = site
    got = browser.open(f"{base}/book/intro.html", DESKTOP)
    dom = got["dom"]
    assert any(u.endswith("contrastive_idea.png") for u in got["requests"]), "the landing figure is not on the page"
    assert re.search(r'<img[^>]+alt="[^"]{20,}"[^>]*contrastive_idea|contrastive_idea[^>]+alt="[^"]{20,}"', dom), \
        "the landing figure has no alt text"
    config = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]
    slug = config["url"].removeprefix("https://github.com/")
    table = re.search(r'<table class="chapter-overview.*?</table>', dom, flags=re.S)
    assert table, "no chapter overview table on the landing page"
    chapters = [p.removeprefix("chapters/") for p in _toc_pages() if p.startswith("chapters/")]
    rows = re.findall(r"<tr.*?</tr>", table.group(0), flags=re.S)[1:]
    assert len(rows) == len(chapters), f"{len(rows)} overview rows for {len(chapters)} chapters"
    for name, row in zip(chapters, rows):
        colab = f"https://colab.research.google.com/github/{slug}/blob/{config['branch']}/chapters/{name}.ipynb"
        assert colab in row, f"overview row of {name}: no Colab link {colab}"
        assert re.search(r"\d+(\.\d)? (s|min)", row), f"overview row of {name}: no runtime"


def test_bibliography_and_launch_buttons(site):
    browser, base = site
    dom = browser.open(f"{base}/book/bibliography.html", DESKTOP)["dom"]
    assert "simcse" in dom.lower() and "momentum contrast" in dom.lower(), "bibliography not rendered"
    assert "arxiv.org/abs/" in dom and "doi.org/" in dom, "bibliography entries do not link to the papers"
    chapter = next(p for p in _toc_pages() if p.startswith("chapters/"))
    dom = browser.open(f"{base}/{chapter}.html", DESKTOP)["dom"]
    assert "colab.research.google.com" in dom, "no Colab launch link on a chapter"
