"""ui.svgplot: round ticks that cover the data, gaps for missing values, escaped text."""
from __future__ import annotations

import math
import re

import pytest

from ui import svgplot
from ui.plots import curves_svg


@pytest.mark.parametrize("lo,hi", [(0.0, 1.0), (97.3, 212.8), (-0.013, 0.004), (5.0, 5.0), (1e-6, 3e-6)])
def test_nice_ticks_cover_the_range_in_round_steps(lo, hi):
    t = svgplot.nice_ticks(lo, hi)
    assert t[0] <= lo and t[-1] >= hi and 2 <= len(t) <= 12
    steps = {round(b - a, 12) for a, b in zip(t, t[1:])}
    assert len(steps) == 1
    step = steps.pop()
    mantissa = step / 10 ** math.floor(math.log10(step))
    assert any(abs(mantissa - m) < 1e-6 for m in (1, 2, 5, 10))


def _points(svg: str) -> list[list[tuple[float, float]]]:
    return [[tuple(map(float, p.split(","))) for p in run.split()] for run in re.findall(r'points="([^"]+)"', svg)]


def test_line_chart_places_points_by_value_and_breaks_at_gaps():
    svg = svgplot.line_chart([svgplot.Series("a", [1, 2, 3, 4, 5], [10.0, 20.0, None, 40.0, 50.0])])
    runs = _points(svg)
    assert [len(r) for r in runs] == [2, 2]  # the None splits the line
    (x1, y1), (x2, y2) = runs[0]
    (x4, y4), (x5, y5) = runs[1]
    assert x1 < x2 < x4 < x5 and y1 > y2 > y4 > y5  # larger values are higher up (smaller SVG y)
    assert x2 - x1 == pytest.approx(x5 - x4, abs=0.11) and y1 - y2 == pytest.approx(y4 - y5, abs=0.11)
    assert svg.count("<circle") == 4


def test_text_from_users_is_escaped():
    svg = svgplot.line_chart([svgplot.Series("<b>x</b>", [0, 1], [1, 2])], title="<script>alert(1)</script>",
                             x_title="a & b")
    assert "<script>" not in svg and "<b>" not in svg
    assert "&lt;script&gt;" in svg and "a &amp; b" in svg


def test_bar_chart_draws_a_bar_per_finite_value_from_zero():
    svg = svgplot.bar_chart([1, 2, 3], [0.5, float("nan"), 0.25])
    heights = [float(h) for h in re.findall(r'<rect [^>]*height="([\d.]+)"', svg)]
    assert len(heights) == 2 and heights[0] == pytest.approx(2 * heights[1], rel=0.02)


def test_history_curves_have_three_panels_with_train_and_held_out():
    history = [{"epoch": e, "train_recon": 100 - e, "test_recon": 101 - e, "train_kl": 20 + e, "test_kl": 21 + e,
                "train_neg_elbo": 120.0, "test_neg_elbo": None} for e in range(1, 6)]
    html = curves_svg(history)
    assert html.count("<svg") == 3 and html.count("held-out") >= 3
    assert len(_points(html)) == 5  # the held-out -ELBO has no values: no line for it


def test_scatter_keeps_equal_units_and_colours_by_class():
    xy = [(0.0, 0.0), (10.0, 0.0), (0.0, 1.0)]  # wide data in a near-square box: y must not be stretched
    svg = svgplot.scatter_chart(xy, labels=[0, 1, 1], class_names=["zero", "one"], width=400, height=400)
    pts = [(float(x), float(y)) for x, y in re.findall(r'<circle cx="([\d.]+)" cy="([\d.]+)" r="2.5"', svg)]
    (x0, y0), (x1, _), (_, y2) = pts
    assert (x1 - x0) == pytest.approx(10 * (y0 - y2), rel=0.05)  # one unit is as long across as up
    assert svg.count(f'fill="{svgplot.CLASS_PALETTE[1]}"') >= 2 and "zero · #0" in svg and "one · #2" in svg
    path = svgplot.Series("path", [0, 10], [0, 1], text=["A", "B"])
    with_path = svgplot.scatter_chart(xy, overlays=[path])
    assert len(_points(with_path)) == 1 and ">A</text>" in with_path and ">B</text>" in with_path


def test_svg_is_a_standalone_document():
    """Shown as an <img> (ui.widgets.show_svg(as_image=True)) the SVG is parsed as a file: it needs its namespace and
    must be well-formed XML."""
    import xml.etree.ElementTree as ET

    svg = svgplot.scatter_chart([(0, 0), (1, 1)], labels=[0, 1], class_names=["a & b", "<c>"],
                                overlays=[svgplot.Series("p", [0, 1], [0, 1], text=["A", "B"])])
    root = ET.fromstring(svg)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
