"""The book: a strict build, every executed notebook checked, then every page opened in a
real headless Chromium.

The build is the README's book command, ``jupyter-book build --all -W -n --keep-going .``,
run once per test session (module fixture) with ``--path-output _build/test``: the tests
build into their own folder, with their own execution cache (emptied first, so every
notebook is executed, in quick mode as LCTOOLS_MODE defaults to quick under pytest) and
their own results cache. The reader's ``_build/html`` and ``_build/.jupyter_cache`` are never
touched. This build is the only execution of the notebooks in a test run (two at a time,
tests/book_execution.py); the executed copies (``_build/test/executed/book/*.ipynb``) are
checked for cells that raised (a chapter's failing ``assert``) or did not run.

The browser checks use Playwright's Python package driving the system Chromium
(``/usr/bin/chromium``, Debian packages ``chromium`` and ``chromium-driver``; another
binary can be named with the environment variable ``LCTOOLS_CHROMIUM``). The built site is
served from a local http.server; requests to anything but that server are blocked. For
every chapter page we check that it loads, shows the mode banner, a ``{prf:theorem}``, an
``{exercise}`` and its ``{solution}`` (as a dropdown), that every image (figure) loads,
that MathJax (served locally) rendered the math without errors, and that the console shows
no errors except blocked external requests. Other pages get the load, image, math and
console checks. Every page is then measured with the reading rules of ``tests/book_rules.py``
(10-pt figure labels at >= 9.5 CSS px in the column, alt text, no overflowing display
equation, at most a handful of sideways-scrolling blocks, no raw LaTeX, and a working live
explorer on chapters 1 and 2). A screenshot of every page's first screen is saved under ``_build/test/screenshots/`` (whole
pages with ``LCTOOLS_FULL_SCREENSHOTS=1``, or ``python tests/book_rules.py _build/test/_build/html
--screenshots DIR`` after the build).
Without Playwright or Chromium, the browser tests skip and say why.
"""
from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import threading
from pathlib import Path
from urllib.parse import urlparse

import nbformat
import book_rules  # tests/book_rules.py: the reading rules (figure scale, overflow, raw LaTeX, live figure)
import pytest
import sync_repo_url  # tools/, put on sys.path by tests/conftest.py
from book_execution import (  # tests/book_execution.py
    BOOK_COMMAND,  # noqa: F401  (the README's command; build_book adds --path-output)
    banner_modes,
    build_book,
    executed_notebook,
    execution_problems,
    execution_seconds,
    executions,
)

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "_build" / "test"  # the test suite's own output folder (--path-output)
HTML = BUILD / "_build" / "html"
SCREENSHOTS = BUILD / "screenshots"
BUILD_TIMEOUT = 3 * 3600  # seconds; quick mode takes minutes
FULL_SCREENSHOTS = os.environ.get("LCTOOLS_FULL_SCREENSHOTS", "").strip().lower() in ("1", "true", "yes")

# Lines with "WARNING" that are not Sphinx warnings: ipykernel >= 7 logs this notice on
# every kernel start (the kernel talks to the local build process over TCP on localhost).
BENIGN_WARNINGS = [
    re.compile(r"^\[IPKernelApp\] WARNING \| Kernel is running over TCP without encryption\."),
]

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def book_build():
    """Run the book command once into _build/test; return (returncode, combined output, seconds)."""
    env = dict(os.environ)
    env.setdefault("LCTOOLS_MODE", "quick")
    return build_book(ROOT, BUILD, env=env, timeout=BUILD_TIMEOUT)


def _warnings(output: str) -> list[str]:
    lines = [line for line in output.splitlines() if "WARNING" in line]
    return [line for line in lines if not any(p.search(line) for p in BENIGN_WARNINGS)]


def test_book_builds_without_warnings(book_build, record_property):
    returncode, output, seconds = book_build
    record_property("build_seconds", round(seconds, 1))
    print(f"book build: {seconds:.1f} s; notebooks: {execution_seconds(output)}")
    warnings = _warnings(output)
    assert not warnings, "book build warnings:\n" + "\n".join(warnings)
    assert returncode == 0, "book build failed (log in _build/test/book-build.log):\n" + output[-5000:]
    assert (HTML / "index.html").exists()


def test_notebook_ran_without_errors(book_build, notebook, record_property):
    """The build's execution of one chapter: every code cell ran, none raised (so every
    ``assert`` of the chapter held), and the banner names the mode of this test run."""
    _, output, _ = book_build
    seconds = execution_seconds(output).get(notebook.name)
    record_property("execute_seconds", seconds)
    path = executed_notebook(BUILD, ROOT, notebook)
    assert path.is_file(), f"the book build wrote no executed copy of {notebook.name} ({path})"
    executed = nbformat.read(path, as_version=4)
    source = nbformat.read(notebook, as_version=4)
    code = [c.source for c in source.cells if c.cell_type == "code"]
    assert [c.source for c in executed.cells if c.cell_type == "code"] == code, (
        f"{path} is not an execution of the current {notebook.name}"
    )
    problems = execution_problems(executed)
    assert not problems, f"{notebook.name} (executed copy: {path}):\n" + "\n".join(problems)
    assert seconds is not None, f"{notebook.name} was not executed by this build (from a cache?)"
    runs = executions(output)[notebook.name]
    assert len(runs) == 1, f"{notebook.name} was executed {len(runs)} times ({runs} s): once is enough"
    assert banner_modes(executed) == [os.environ.get("LCTOOLS_MODE", "quick").strip().lower()]


# --------------------------------------------------------------------------- browser


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass


@pytest.fixture(scope="module")
def site(book_build):
    """Base URL of _build/html served on localhost."""
    if not (HTML / "index.html").exists():
        pytest.fail("the book build produced no _build/html/index.html")
    handler = functools.partial(_QuietHandler, directory=str(HTML))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _chromium_path() -> str | None:
    for candidate in (os.environ.get("LCTOOLS_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and Path(candidate).exists():
            return candidate
    return None


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        pytest.skip(f"browser checks need the playwright Python package ({exc})")
    path = _chromium_path()
    if path is None:
        pytest.skip(
            "browser checks need Chromium: no /usr/bin/chromium (apt-get install chromium "
            "chromium-driver) and LCTOOLS_CHROMIUM is not set"
        )
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def _is_local(url: str, base: str) -> bool:
    parsed = urlparse(url)
    return parsed.scheme in ("data", "blob", "about") or url.startswith(base + "/") or url == base


def _open(browser, site, page_path: str):
    """Open one page; return (page, context, console errors, blocked URLs, response)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    blocked: list[str] = []

    def route(r):
        if _is_local(r.request.url, site):
            r.continue_()
        else:
            blocked.append(r.request.url)
            r.abort()

    context.route("**/*", route)
    page = context.new_page()
    errors: list[str] = []

    def on_console(msg):
        if msg.type != "error":
            return
        where = (msg.location or {}).get("url", "")
        if "Failed to load resource" in msg.text and where and not _is_local(where, site):
            return  # a blocked external request
        errors.append(f"console: {msg.text} ({where})")

    page.on("console", on_console)
    page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))

    def on_failed(request):
        if _is_local(request.url, site) and not request.url.startswith("data:"):
            errors.append(f"failed request: {request.url} ({request.failure})")

    page.on("requestfailed", on_failed)
    response = page.goto(f"{site}/{page_path}.html", wait_until="load")
    return page, context, errors, blocked, response


_TYPESET = """async () => {
  const ready = () => window.MathJax && MathJax.startup && MathJax.startup.promise;
  for (let i = 0; i < 300 && !ready(); i++) await new Promise(r => setTimeout(r, 100));
  if (!ready()) return {loaded: false};
  await MathJax.startup.promise;
  return {
    loaded: true,
    containers: document.querySelectorAll('mjx-container').length,
    errors: Array.from(document.querySelectorAll('mjx-merror')).map(e => e.textContent),
  };
}"""

_IMAGES = """async () => {
  const imgs = Array.from(document.querySelectorAll('article img, main img'));
  for (const img of imgs) { img.loading = 'eager'; img.scrollIntoView(); }
  await Promise.all(imgs.map(img => img.complete ? null :
      new Promise(ok => { img.onload = ok; img.onerror = ok; })));
  window.scrollTo(0, 0);
  return imgs.map(img => ({src: img.currentSrc || img.src, width: img.naturalWidth}));
}"""


def test_page_in_browser(browser, site, book_page):
    notebooks = {str(p.relative_to(ROOT).with_suffix("")) for p in sync_repo_url.toc_chapters(ROOT)}
    chapter = book_page in notebooks
    page, context, errors, blocked, response = _open(browser, site, book_page)
    try:
        assert response is not None and response.ok, f"{book_page}: HTTP {response and response.status}"
        has_math = page.locator(".math").count() > 0  # Sphinx's math nodes, for MathJax to typeset
        math = page.evaluate(_TYPESET) if (has_math or chapter) else None
        images = page.evaluate(_IMAGES)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        # the first screen of every page (a full-page screenshot of a long page costs seconds of
        # CPU: LCTOOLS_FULL_SCREENSHOTS=1, or python tests/book_rules.py --screenshots DIR)
        page.screenshot(path=str(SCREENSHOTS / f"{Path(book_page).name}.png"), full_page=FULL_SCREENSHOTS)

        if math is not None:
            assert math["loaded"], f"{book_page}: MathJax was not loaded (is _static/mathjax served?)"
            assert math["containers"] > 0, f"{book_page}: no math rendered by MathJax (mjx-container)"
            assert not math["errors"], f"{book_page}: MathJax errors: {math['errors']}"
        broken = [img["src"] for img in images if img["width"] == 0]
        assert not broken, f"{book_page}: images that did not load: {broken}"
        if chapter:
            assert images, f"{book_page}: no figure"
            assert page.locator("div.proof.theorem").count() > 0, f"{book_page}: no {{prf:theorem}} block"
            assert page.locator("div.exercise").count() > 0, f"{book_page}: no {{exercise}} block"
            solutions = page.locator("div.solution")
            dropdowns = page.locator("div.solution.dropdown")
            assert solutions.count() > 0, f"{book_page}: no {{solution}} block"
            assert dropdowns.count() == solutions.count(), f"{book_page}: solutions must use :class: dropdown"
            banner = page.locator(".lctools-mode-banner")
            assert banner.count() == 1, f"{book_page}: no mode banner (call lctools.course.banner(MODE))"
            assert re.search(r"executed in (quick|full) mode", banner.inner_text()), banner.inner_text()
        book_rules.prepare(page)
        broken_rules = book_rules.problems(page, book_page)
        assert not broken_rules, f"{book_page}: reading rules broken:\n" + "\n".join(broken_rules)
        assert not errors, f"{book_page}: browser errors:\n" + "\n".join(errors)
    finally:
        context.close()
