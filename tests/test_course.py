"""lctools.course: the quick/full switch every notebook uses."""
from __future__ import annotations

import types

import pytest
import torch

from lctools import course


def test_explicit_mode_wins(monkeypatch):
    monkeypatch.setenv("LCTOOLS_MODE", "full")
    assert course.resolve_mode("quick") == "quick"
    assert course.resolve_mode("FULL ") == "full"


def test_env_var(monkeypatch):
    monkeypatch.setenv("LCTOOLS_MODE", "full")
    assert course.resolve_mode() == "full"
    monkeypatch.setenv("LCTOOLS_MODE", "Quick")
    assert course.resolve_mode() == "quick"


@pytest.mark.parametrize("cuda", [True, False])
def test_default_is_quick_with_or_without_cuda(monkeypatch, cuda):
    """Colab-safe: a GPU alone never selects full mode ("Run all" must not start hours)."""
    monkeypatch.delenv("LCTOOLS_MODE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: int(cuda))
    assert course.resolve_mode() == "quick"
    assert course.resolve_mode(None) == "quick"
    assert course.settings(None, dict(a=1), dict(a=2)).a == 1
    for unset in ("", "  "):  # empty counts as unset
        monkeypatch.setenv("LCTOOLS_MODE", unset)
        assert course.resolve_mode() == "quick"


@pytest.mark.parametrize("cuda", [True, False])
def test_full_only_when_asked(monkeypatch, cuda):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.delenv("LCTOOLS_MODE", raising=False)
    assert course.resolve_mode("full") == "full"  # MODE = "full" in the parameters cell
    monkeypatch.setenv("LCTOOLS_MODE", "full")
    assert course.resolve_mode() == "full"
    assert course.resolve_mode(None) == "full"


def test_notebooks_say_quick_is_the_default():
    """The parameters cell of every chapter documents the default and how to ask for full."""
    import json
    from pathlib import Path

    book = Path(__file__).resolve().parents[1] / "book"
    chapters = sorted(book.glob("0*.ipynb"))
    assert chapters
    for path in chapters:
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        (params,) = [c for c in cells if "parameters" in c["metadata"].get("tags", [])]
        text = "".join(params["source"])
        assert "CUDA" not in text and '"quick"' in text and '"full"' in text, (path.name, text)
        assert "MODE = None" in text


def test_bad_values_name_the_allowed_ones(monkeypatch):
    with pytest.raises(ValueError, match="'quick', 'full'"):
        course.resolve_mode("fast")
    monkeypatch.setenv("LCTOOLS_MODE", "gpu")
    with pytest.raises(ValueError, match="LCTOOLS_MODE.*'quick', 'full'.*'gpu'"):
        course.resolve_mode()


def test_settings_picks_the_mode():
    quick, full = dict(width=8, steps=10), dict(width=200, steps=10**6)
    cfg = course.settings("quick", quick=quick, full=full)
    assert isinstance(cfg, types.SimpleNamespace)
    assert (cfg.width, cfg.steps) == (8, 10)
    assert course.settings("full", quick, full).width == 200
    cfg.width = 1  # a copy: the dictionaries are left alone
    assert quick["width"] == 8


def test_settings_none_resolves(monkeypatch):
    monkeypatch.setenv("LCTOOLS_MODE", "full")
    assert course.settings(None, dict(a=1), dict(a=2)).a == 2


def test_settings_needs_same_keys():
    with pytest.raises(ValueError, match=r"only in quick: \['lr'\].*only in full: \['steps'\]"):
        course.settings("quick", dict(width=1, lr=0.1), dict(width=2, steps=3))
    with pytest.raises(ValueError, match="'quick', 'full'"):
        course.settings("medium", dict(a=1), dict(a=2))


@pytest.mark.parametrize("mode", ["quick", "full"])
def test_banner_says_the_mode(mode, capsys):
    text = course.banner_text(mode)
    assert f"executed in **{mode}** mode" in text
    assert "LCTOOLS_MODE=" in text
    obj = course._Banner(mode)
    html = obj._repr_html_()
    assert "lctools-mode-banner" in html and f"<strong>{mode}</strong>" in html
    assert "admonition" in html
    assert obj._repr_markdown_().startswith("> ")
    course.banner(mode)  # outside IPython it prints
    assert f"executed in {mode} mode" in capsys.readouterr().out
    with pytest.raises(ValueError):
        course.banner("turbo")


def test_on_colab(monkeypatch):
    import sys

    assert course.on_colab() is ("google.colab" in sys.modules)
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    assert course.on_colab() is True


@pytest.mark.parametrize("data,expected", [
    ("two moons (500 points)", "data: two moons (500 points)"),
    (["two moons", "MNIST (1000 images)"], "data: two moons and MNIST (1000 images)"),
    (["a", "b", "c"], "data: a, b and c"),
    (None, None),
])
def test_banner_names_data_and_device(data, expected):
    text = course.banner_text("quick", data=data, device="cpu")
    assert "executed in **quick** mode" in text and "on **CPU**" in text
    if expected is None:
        assert "data:" not in text
    else:
        assert expected in text.replace("**", "")
    html = course._Banner("full", data=data, device="cpu")._repr_html_()
    assert "<strong>CPU</strong>" in html and "<strong>full</strong>" in html


def test_banner_data_from_dataset_objects():
    class Named:
        name = "digits"

    class Mnist:
        name = "mnist"

    text = course.banner_text("quick", data=Named(), device="cpu")
    assert "data: **scikit-learn's 8x8 digits (the offline stand-in for MNIST)**" in text
    assert "data: **MNIST and x**" in course.banner_text("quick", data=[Mnist(), "x"], device="cpu")


@pytest.mark.parametrize("bad", [[], [""], [3], 5])
def test_banner_rejects_bad_data(bad):
    with pytest.raises(ValueError, match="data"):
        course.banner_text("quick", data=bad)
    with pytest.raises(ValueError, match="data"):
        course.banner("quick", data=bad)


def test_device_name():
    assert course.device_name("cpu") == "CPU"
    expected = "GPU" if torch.cuda.is_available() else "CPU"
    assert course.device_name().startswith(expected)
