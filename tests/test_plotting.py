"""lctools.plotting: the column rule checked against figures actually rendered to PNG."""
from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.image as mpimg  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from lctools import plotting  # noqa: E402


def _png_width(fig, **kw) -> int:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", **kw)
    buf.seek(0)
    return mpimg.imread(buf).shape[1]


@pytest.mark.parametrize("width,dpi", [(7.0, 100), (12.0, 100), (5.0, 72), (15.0, 150), (10.0, 200)])
def test_label_css_px_matches_a_rendered_png(width, dpi):
    fig = plt.figure(figsize=(width, 3), dpi=dpi)
    try:
        natural = _png_width(fig, dpi=dpi)
    finally:
        plt.close(fig)
    assert natural == round(width * dpi)
    shown = min(natural, plotting.COLUMN_PX)                 # the browser fits the column
    expected = 10 * dpi / 72 * shown / natural                # 10 pt = 10/72 inch
    assert plotting.label_css_px(width, dpi=dpi) == pytest.approx(expected, rel=1e-3)


def test_max_width_is_where_the_rule_breaks():
    w = plotting.max_figure_width()
    assert 9.9 < w < 10.2
    assert plotting.label_css_px(w * 0.999) >= plotting.MIN_LABEL_PX
    assert plotting.label_css_px(w * 1.01) < plotting.MIN_LABEL_PX
    # The measurements: 10-15 inch figures showed their labels at 5-9.5 px.
    assert plotting.label_css_px(15.0) < 6.5 and plotting.label_css_px(13.5) < 7.5


@pytest.mark.parametrize("nrows,ncols", [(1, 1), (1, 2), (2, 2), (1, 3), (3, 1)])
def test_column_figure_labels_meet_the_rule_after_tight_cropping(nrows, ncols):
    fig, axes = plotting.column_figure(nrows, ncols)
    try:
        assert fig.get_size_inches()[0] == pytest.approx(plotting.COLUMN_WIDTH)
        assert np.size(axes) == nrows * ncols
        for ax in np.ravel(axes):
            ax.plot([0, 1], [0, 1])
            ax.set(xlabel="a label", ylabel="another", title="title")
        natural = _png_width(fig, bbox_inches="tight")        # what Jupyter's inline backend saves
        text = np.ravel(axes)[0].xaxis.label
        fig.canvas.draw()
        # the label's em size in PNG pixels, shown at the column's scale
        em_px = text.get_fontsize() * fig.dpi / 72 * min(1, plotting.COLUMN_PX / natural)
        assert em_px >= plotting.MIN_LABEL_PX, (natural, em_px)
        assert plotting.check_figure(fig) >= plotting.MIN_LABEL_PX
    finally:
        plt.close(fig)


def test_column_figure_height_and_options():
    fig, ax = plotting.column_figure(height=3.0, sharex=True)
    assert tuple(fig.get_size_inches()) == pytest.approx((7.0, 3.0))
    plt.close(fig)
    fig, axes = plotting.column_figure(4, 1, aspect=0.8)
    assert fig.get_size_inches()[1] == pytest.approx(9.0)     # capped at max_height
    plt.close(fig)


@pytest.mark.parametrize("kwargs", [dict(nrows=0), dict(ncols=2.5), dict(width=12.0), dict(ncols=6),
                                    dict(width=-1.0), dict(height=0.0), dict(nrows=True)])
def test_column_figure_rejects_bad_input(kwargs):
    with pytest.raises(ValueError):
        plotting.column_figure(**kwargs)
    plt.close("all")


def test_column_figure_accepts_numpy_and_tensor_numbers():
    """Counts and sizes go through lctools.validation: numpy scalars and 0-d tensors are numbers."""
    import torch

    fig, axes = plotting.column_figure(np.int64(1), torch.tensor(2), width=np.float32(6.0))
    assert np.size(axes) == 2 and fig.get_size_inches()[0] == pytest.approx(6.0)
    plt.close(fig)
    with pytest.raises(ValueError, match="quantile"):
        plotting.symlog_axis(plt.subplots()[1], quantile=float("nan"))
    plt.close("all")


def test_check_figure_flags_wide_figures():
    fig = plt.figure(figsize=(13.5, 4))
    with pytest.raises(ValueError, match="CSS px"):
        plotting.check_figure(fig)
    plt.close(fig)


def test_symlog_axis():
    fig, ax = plt.subplots()
    vals = np.concatenate([-np.geomspace(1, 1e4, 50), np.geomspace(0.3, 1e3, 50), [0.0]])
    plotting.symlog_axis(ax, vals)
    assert ax.get_yscale() == "symlog"
    lin = ax.yaxis.get_transform().linthresh
    assert lin == 10.0 ** np.floor(np.log10(np.quantile(np.abs(vals[vals != 0]), 0.05)))
    assert (np.abs(vals) >= lin).mean() >= 0.9                  # most data on the log part
    plotting.symlog_axis(ax, axis="x", linthresh=0.5)
    assert ax.get_xscale() == "symlog" and ax.xaxis.get_transform().linthresh == 0.5
    with pytest.raises(ValueError):
        plotting.symlog_axis(ax, axis="z")
    with pytest.raises(ValueError):
        plotting.symlog_axis(ax, linthresh=0)
    with pytest.raises(ValueError):
        plotting.symlog_axis(ax, vals, quantile=2)
    plt.close(fig)
