"""Local Sphinx extension for the book (loaded from _config.yml, ``sphinx: local_extensions``).

Work-around for a Sphinx < 8.2 bug (sphinx-doc/sphinx#13402): an inline script added with
``app.add_js_file(None, body=...)`` after the HTML builder started is registered twice
(once as ``None``, once as ``''``). sphinx-thebe adds its configuration that way, so every
page declared ``const THEBE_JS_URL`` twice and the browser logged
"Identifier 'THEBE_JS_URL' has already been declared". We drop exact duplicates from each
page's script list. Harmless (a no-op) on Sphinx versions with the fix.

It also adds the book's own style sheet, ``tools/static/lctools_book.css`` (served locally):
code and text outputs set so that 88-character lines fit the 688-px column.
"""
from __future__ import annotations

from pathlib import Path

STATIC = Path(__file__).resolve().parent / "static"


def _key(script) -> tuple:
    filename = getattr(script, "filename", script) or ""
    attributes = getattr(script, "attributes", {}) or {}
    return (str(filename), tuple(sorted((k, str(v)) for k, v in attributes.items())))


def _dedupe_scripts(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for script in scripts:
        key = _key(script)
        if key not in seen:
            seen.add(key)
            unique.append(script)
    if len(unique) != len(scripts):
        context["script_files"] = unique


def _add_static_path(app):
    if str(STATIC) not in app.config.html_static_path:
        app.config.html_static_path.append(str(STATIC))


def setup(app):
    app.connect("builder-inited", _add_static_path)
    app.add_css_file("lctools_book.css")
    app.connect("html-page-context", _dedupe_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1"}
