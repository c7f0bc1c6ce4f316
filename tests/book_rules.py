"""The book's reading rules, measured in a real browser page (Playwright) at 1280 px.

Each rule is a JavaScript snippet run in the page and a Python function that returns what
breaks the rule (an empty list when the page is fine); ``tests/test_book.py`` calls them for
every page, and ``python tests/book_rules.py DIR`` prints the counts per page for a built
book (``DIR`` = ``_build/html``), for before/after comparisons.

* :func:`small_figures` -- figure scale: an image of natural width ``w`` shown at width ``r``
  shows a 10-pt label (``10 * FIGURE_DPI / 72`` image pixels) at
  ``10 * FIGURE_DPI / 72 * r / w`` CSS pixels; the rule asks for ``>= MIN_LABEL_PX``
  (``lctools.plotting``: figures about 7 inches wide at the default font and dpi).
* :func:`overflowing_equations` -- a display equation wider than its container (cut off or
  scrolling).
* :func:`scrolling_blocks` -- code, output and table blocks that scroll sideways; a page may
  have at most ``MAX_SCROLLING_BLOCKS``. The page itself must never scroll sideways.
* :func:`raw_latex` -- TeX left in the text outside rendered math (``\\alpha``, ``\\mathbb``,
  ``$$``, a ``$`` glued to a word) and parameter descriptions split in the wrong place on
  API pages (``name (half a sentence) – the other half``).
* :func:`figures_without_alt` -- every figure has alt text that is not a file name.
* :func:`live_figure_problems` -- every kernel-free explorer (``lctools.explorer``) drew
  itself, and moving its step slider redraws it.

Call :func:`prepare` first: it waits for MathJax and loads every (lazy) image.
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from lctools.plotting import FIGURE_DPI, LABEL_PT, MIN_LABEL_PX  # noqa: E402

MAX_SCROLLING_BLOCKS = 3
"""At most this many blocks per page may need horizontal scrolling ("a handful")."""

EXPLORER_PAGES = ("book/01_linear_regions", "book/02_local_complexity")
"""Pages that must carry a live (kernel-free) region explorer."""

ARTICLE = "article.bd-article, main article, article, main"

PREPARE_JS = """async () => {
  const ready = () => window.MathJax && MathJax.startup && MathJax.startup.promise;
  for (let i = 0; i < 100 && !ready() && document.querySelector('.math'); i++)
    await new Promise(r => setTimeout(r, 100));
  if (ready()) await MathJax.startup.promise;
  const imgs = Array.from(document.querySelectorAll('article img, main img'));
  for (const img of imgs) { img.loading = 'eager'; }
  await Promise.all(imgs.map(img => img.complete ? null :
      new Promise(ok => { img.onload = ok; img.onerror = ok; })));
  return imgs.length;
}"""

FIGURES_JS = """([article, dpi, pt]) => {
  const root = document.querySelector(article) || document.body;
  return Array.from(root.querySelectorAll('img')).map(img => {
    const r = img.getBoundingClientRect();
    const scale = img.naturalWidth ? r.width / img.naturalWidth : 0;
    return {src: img.currentSrc || img.src, natural: img.naturalWidth, shown: Math.round(r.width),
            scale: scale, label_px: pt * dpi / 72 * scale,
            alt: img.getAttribute('alt') || '', visible: r.width > 0 && r.height > 0};
  });
}"""

EQUATIONS_JS = """(article) => {
  const root = document.querySelector(article) || document.body;
  const right = root.getBoundingClientRect().right;
  const out = [];
  for (const el of root.querySelectorAll('mjx-container[display="true"], mjx-container[jax][display]')) {
    if (el.getAttribute('display') !== 'true') continue;
    const box = el.getBoundingClientRect();
    if (box.width === 0) continue;                      // inside a closed dropdown
    const math = el.querySelector('mjx-math') || el;
    const m = math.getBoundingClientRect();
    const parent = el.parentElement.getBoundingClientRect();
    const avail = Math.min(box.width, parent.width);
    const over = Math.max(m.width - avail, m.right - right, el.scrollWidth - el.clientWidth);
    if (over > 1) out.push({text: (el.closest('.math-wrapper, div.math, p, li') || el)
                                     .textContent.trim().slice(0, 80),
                            width: Math.round(m.width), available: Math.round(avail),
                            overflow: Math.round(over)});
  }
  return out;
}"""

SCROLLING_JS = """(article) => {
  const root = document.querySelector(article) || document.body;
  const els = [];
  for (const el of root.querySelectorAll('*')) {
    if (el.closest('mjx-container')) continue;           // equations: their own rule
    if (el.clientWidth === 0 || el.scrollWidth <= el.clientWidth + 1) continue;
    const ox = getComputedStyle(el).overflowX;
    if (ox !== 'auto' && ox !== 'scroll') continue;
    if (el.querySelector('mjx-container[display="true"]') && !el.querySelector('pre, table')) continue;
    els.push(el);
  }
  const out = [];
  for (const el of els) {
    if (els.some(o => o !== el && o.contains(el))) continue;   // count a block once
    const kind = el.closest('.cell_output, .output') ? 'output'
               : el.closest('.cell_input, div.highlight') ? 'code'
               : el.querySelector('table') || el.tagName === 'TABLE' ? 'table' : el.tagName.toLowerCase();
    out.push({kind: kind, tag: el.tagName.toLowerCase(), cls: el.className.toString().slice(0, 60),
              text: el.textContent.trim().slice(0, 60),
              width: el.clientWidth, content: el.scrollWidth});
  }
  return out;
}"""

PAGE_WIDTH_JS = "() => ({page: document.documentElement.scrollWidth, viewport: window.innerWidth})"

RAW_LATEX_JS = """(article) => {
  const root = document.querySelector(article) || document.body;
  const skip = 'mjx-container, script, style, pre, code, kbd, .highlight, .cell_input, .MathJax';
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  const pattern = /\\\\[A-Za-z]{2,}|\\$\\$|\\$[A-Za-z\\\\{]|[A-Za-z}]\\$(?![0-9])|\\\\[()\\[\\]]/;
  const out = [];
  let node;
  while ((node = walker.nextNode())) {
    const el = node.parentElement;
    if (!el || el.closest(skip)) continue;
    const text = node.textContent;
    const m = text.match(pattern);
    if (m) out.push(text.slice(Math.max(0, m.index - 40), m.index + 40).replace(/\\s+/g, ' ').trim());
  }
  // parameter lists (autodoc + napoleon): "name (type) – description"; a "type" that reads
  // like half a sentence, followed by a description, is a description split in the wrong place
  for (const p of root.querySelectorAll('dl.field-list dd li > p, dl.field-list dd > p')) {
    const strong = p.firstElementChild;
    if (!strong || strong.tagName !== 'STRONG' || p.firstChild !== strong) continue;
    const rest = p.textContent.slice(strong.textContent.length);
    if (!rest.startsWith(' (')) continue;
    let depth = 0, end = -1;
    for (let i = 1; i < rest.length; i++) {
      if (rest[i] === '(') depth++;
      else if (rest[i] === ')' && --depth === 0) { end = i; break; }
    }
    if (end < 0) continue;
    const type = rest.slice(2, end).trim(), after = rest.slice(end + 1);
    const words = type.split(/\\s+/).length;    // a type is a few words ("str or list, optional")
    const sentence = words > 8 || (words > 4 && (/[;()=]/.test(type) ||
        /\\b(the|a|an|or|and|of|by|in|to|for|is|local)$/.test(type)));
    if (sentence && /^\\s*[\\u2013\\u2014-]/.test(after))
      out.push('parameter split in the wrong place: ' + p.textContent.slice(0, 90));
  }
  return out;
}"""

EXPLORERS_JS = """async () => {
  const roots = Array.from(document.querySelectorAll('.lctools-explorer'));
  const out = [];
  for (const root of roots) {
    root.scrollIntoView();
    const r = {id: root.id, mounted: !!root.dataset.mounted, frames: +(root.dataset.frames || 0)};
    const canvas = root.querySelector('canvas'), step = root.querySelector('.lcx-step');
    r.regions = (root.querySelector('.lcx-regions') || {}).textContent || '';
    r.lc = (root.querySelector('.lcx-lc') || {}).textContent || '';
    if (canvas && step && +step.max > 0) {
      const before = canvas.toDataURL(), frames = r.frames;
      step.value = String(+step.value > 0 ? 0 : step.max);
      step.dispatchEvent(new Event('input', {bubbles: true}));
      for (let i = 0; i < 100 && +(root.dataset.frames || 0) === frames; i++)
        await new Promise(ok => setTimeout(ok, 50));
      r.redrawn = +(root.dataset.frames || 0) > frames;
      r.changed = canvas.toDataURL() !== before;
    }
    out.push(r);
  }
  window.scrollTo(0, 0);
  return out;
}"""


def prepare(page) -> int:
    """Wait for MathJax (if the page has math) and for every image; return the image count."""
    return page.evaluate(PREPARE_JS)


def figures(page) -> list:
    """Every image of the article: natural and shown width, scale and its 10-pt label size."""
    return page.evaluate(FIGURES_JS, [ARTICLE, FIGURE_DPI, LABEL_PT])


def small_figures(page) -> list:
    """Visible images whose 10-pt labels show below ``MIN_LABEL_PX`` CSS pixels."""
    return [f for f in figures(page) if f["visible"] and f["natural"] > 0 and f["label_px"] < MIN_LABEL_PX]


def figures_without_alt(page) -> list:
    """Visible images with no alt text, or with a file name as alt text."""
    bad = []
    for f in figures(page):
        alt = f["alt"].strip()
        if f["visible"] and (not alt or alt.lower().endswith((".png", ".svg", ".jpg")) or alt == f["src"]):
            bad.append(f)
    return bad


def overflowing_equations(page) -> list:
    """Display equations (MathJax) wider than the space they have."""
    return page.evaluate(EQUATIONS_JS, ARTICLE)


def scrolling_blocks(page) -> list:
    """Blocks that scroll sideways (code, outputs, tables), one entry per scrolling element
    that is not inside another one."""
    return page.evaluate(SCROLLING_JS, ARTICLE)


def page_scrolls_sideways(page) -> bool:
    """Whether the whole page is wider than the window."""
    w = page.evaluate(PAGE_WIDTH_JS)
    return w["page"] > w["viewport"] + 1


def raw_latex(page) -> list:
    """Snippets of text with TeX left outside rendered math, and mis-split parameter lists."""
    return page.evaluate(RAW_LATEX_JS, ARTICLE)


def live_figures(page) -> list:
    """State of every explorer on the page after moving its step slider once."""
    return page.evaluate(EXPLORERS_JS)


def live_figure_problems(page) -> list:
    """What is wrong with the page's explorers (empty list if each drew and redraws)."""
    problems = []
    for r in live_figures(page):
        if not r["mounted"] or r["frames"] < 1:
            problems.append(f"explorer {r['id']} did not draw (no JavaScript run?)")
            continue
        if not r["regions"].strip().isdigit() or "\u00b1" not in r["lc"]:
            problems.append(f"explorer {r['id']} readouts are empty: {r['regions']!r}, {r['lc']!r}")
        if not (r.get("redrawn") and r.get("changed")):
            problems.append(f"explorer {r['id']}: moving the step slider did not redraw the figure")
    return problems


def measure(page) -> dict:
    """Counts of every rule on one (prepared) page."""
    return {
        "figures": len([f for f in figures(page) if f["visible"]]),
        "small_figures": len(small_figures(page)),
        "overflowing_equations": len(overflowing_equations(page)),
        "scrolling_blocks": len(scrolling_blocks(page)),
        "raw_latex": len(raw_latex(page)),
        "page_scrolls": page_scrolls_sideways(page),
        "explorers": len(live_figures(page)),
    }


def problems(page, page_path: str = "") -> list:
    """Every broken rule of one (prepared) page, as readable lines. ``page_path`` (e.g.
    ``book/01_linear_regions``) says whether the page must have a live explorer."""
    out = []
    if page_path in EXPLORER_PAGES and not live_figures(page):
        out.append("no live region explorer (lctools.explorer.region_explorer) on this page")
    for f in figures_without_alt(page):
        out.append(f"figure {f['src'].rsplit('/', 1)[-1]} has no meaningful alt text ({f['alt']!r})")
    for f in small_figures(page):
        out.append(f"figure {f['src'].rsplit('/', 1)[-1]} is {f['natural']} px wide, shown at "
                   f"{f['shown']} px: 10-pt labels at {f['label_px']:.1f} CSS px (< {MIN_LABEL_PX}); "
                   "draw it about 7 inches wide (lctools.plotting.column_figure) or split it")
    for e in overflowing_equations(page):
        out.append(f"display equation overflows by {e['overflow']} px: {e['text']!r}")
    blocks = scrolling_blocks(page)
    if len(blocks) > MAX_SCROLLING_BLOCKS:
        out.append(f"{len(blocks)} blocks scroll sideways (at most {MAX_SCROLLING_BLOCKS}): "
                   + "; ".join(f"{b['kind']} {b['text'][:40]!r} ({b['content']} > {b['width']} px)"
                               for b in blocks[:8]))
    if page_scrolls_sideways(page):
        out.append("the page itself scrolls sideways")
    for t in raw_latex(page):
        out.append(f"raw LaTeX or mis-rendered text: {t!r}")
    out += live_figure_problems(page)
    return out


def _main(argv, screenshots=None) -> int:  # pragma: no cover - a measuring tool
    """``python tests/book_rules.py _build/html [page ...] [-v] [--screenshots DIR]``: print
    the counts per page (``-v``: and every problem), and save a screenshot of each whole page
    at 1280 px to ``DIR`` (what a reader sees; the tests keep only the first screen)."""
    import functools
    import http.server
    import threading

    from playwright.sync_api import sync_playwright

    html = Path(argv[1]).resolve()
    pages = argv[2:] or sorted(str(p.relative_to(html).with_suffix(""))
                               for p in (html / "book").glob("*.html"))
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(html))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    totals = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                     args=["--no-sandbox", "--disable-gpu"])
        print(f"{'page':32s} figs small eqns scroll latex pagescroll explorers")
        for name in pages:
            ctx = browser.new_context(viewport={"width": 1280, "height": 900})
            ctx.route("**/*", lambda r: r.continue_() if r.request.url.startswith(base) else r.abort())
            page = ctx.new_page()
            page.goto(f"{base}/{name}.html", wait_until="load")
            prepare(page)
            m = measure(page)
            print(f"{name:32s} {m['figures']:4d} {m['small_figures']:5d} {m['overflowing_equations']:4d} "
                  f"{m['scrolling_blocks']:6d} {m['raw_latex']:5d} {str(m['page_scrolls']):>10s} {m['explorers']:9d}")
            if "-v" in sys.argv:
                for line in problems(page, name):
                    print("    ", line[:200])
            if screenshots:
                Path(screenshots).mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(Path(screenshots) / f"{Path(name).name}.png"), full_page=True)
            for k, v in m.items():
                totals[k] = totals.get(k, 0) + int(v)
            ctx.close()
        browser.close()
    print("total", totals)
    server.shutdown()
    return 0


if __name__ == "__main__":  # pragma: no cover
    import argparse

    cli = argparse.ArgumentParser(description=_main.__doc__)
    cli.add_argument("html")
    cli.add_argument("pages", nargs="*")
    cli.add_argument("-v", action="store_true")
    cli.add_argument("--screenshots", metavar="DIR")
    args = cli.parse_args()
    sys.exit(_main([sys.argv[0], args.html, *args.pages], screenshots=args.screenshots))
