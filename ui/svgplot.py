"""Small line and bar charts as inline SVG, for the pages' secondary charts.

A Plotly chart costs the browser 100-150 ms of main-thread work to mount (measured: Interpolate's three charts held it
for ~400 ms of every page open), while the same few dozen points as SVG cost a DOM parse. These charts draw axes with
round ticks, lines or bars, a legend, and a native tooltip (<title>) on every point; text and axes take the theme's
colour (currentColor), so they read in light and dark themes. The SVG scales to its column (viewBox, width 100 %).
No streamlit here: pages show the markup with ui.widgets.show_svg.
"""
from __future__ import annotations

import html
import math
from dataclasses import dataclass
from typing import Sequence

PALETTE = ("#4e79a7", "#e15759", "#59a14f", "#f28e2b", "#76b7b2", "#edc948")  # series
# classes on the latent maps (Tableau 10), shared with ui.plots' Plotly maps
CLASS_PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f",
                 "#bab0ac")
FONT = "font-family: 'Source Sans Pro', sans-serif; font-size: 12px"


@dataclass(frozen=True)
class Series:
    name: str
    x: Sequence[float]
    y: Sequence[float | None]  # None: a gap (an epoch without that value)
    color: str = PALETTE[0]
    dash: bool = False
    markers: bool = True
    fmt: str = ".3g"  # the tooltip's number format
    text: Sequence[str] | None = None  # a label drawn above each point


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values (1, 2 or 5 times a power of ten apart) covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0]
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / max(1, count)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.floor(lo / step) * step
    ticks, t = [], first
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 12))
        t += step
    if ticks[-1] < hi:
        ticks.append(round(t, 12))
    return ticks


def _label(v: float) -> str:
    return f"{v:.4g}".replace("-", "−")


class _Frame:
    """Axes box, scales and tick labels for one chart."""

    def __init__(self, width: int, height: int, xs: list[float], ys: list[float], x_title: str, y_title: str,
                 title: str, legend: bool, x_ticks: list[float] | None = None, y_from_zero: bool = False,
                 ranges: tuple[float, float, float, float] | None = None):
        self.w, self.h = width, height
        self.left, self.right, self.top, self.bottom = self.margins(title, legend, x_title)
        if ranges is not None:  # fixed ranges (an equal-aspect map): the round ticks inside them
            self.x0, self.x1, self.y0, self.y1 = ranges
            self.xt = [t for t in nice_ticks(self.x0, self.x1) if self.x0 <= t <= self.x1]
            self.yt = [t for t in nice_ticks(self.y0, self.y1) if self.y0 <= t <= self.y1]
        else:
            lo = min(ys, default=0.0)
            self.yt = nice_ticks(min(lo, 0.0) if y_from_zero else lo, max(ys, default=1.0))
            self.xt = x_ticks if x_ticks is not None else nice_ticks(min(xs, default=0.0), max(xs, default=1.0))
            self.x0, self.x1 = min(self.xt[0], min(xs, default=0.0)), max(self.xt[-1], max(xs, default=1.0))
            self.y0, self.y1 = self.yt[0], self.yt[-1]
        self.parts: list[str] = []
        if title:
            self.parts.append(f'<text x="{width / 2:.1f}" y="14" text-anchor="middle" font-weight="600">'
                              f"{html.escape(title)}</text>")
        for t in self.yt:
            y = self.py(t)
            self.parts.append(f'<line x1="{self.left}" x2="{width - self.right}" y1="{y:.1f}" y2="{y:.1f}" '
                              f'stroke="currentColor" stroke-opacity="0.12"/>'
                              f'<text x="{self.left - 6}" y="{y + 4:.1f}" text-anchor="end">{_label(t)}</text>')
        for t in self.xt:
            x = self.px(t)
            self.parts.append(f'<text x="{x:.1f}" y="{height - self.bottom + 15}" text-anchor="middle">{_label(t)}</text>')
        self.parts.append(f'<line x1="{self.left}" x2="{width - self.right}" y1="{height - self.bottom}" '
                          f'y2="{height - self.bottom}" stroke="currentColor" stroke-opacity="0.5"/>')
        if x_title:
            self.parts.append(f'<text x="{(self.left + width - self.right) / 2:.1f}" y="{height - 4}" '
                              f'text-anchor="middle">{html.escape(x_title)}</text>')
        if y_title:
            cy = (self.top + height - self.bottom) / 2
            self.parts.append(f'<text transform="translate(12 {cy:.1f}) rotate(-90)" text-anchor="middle">'
                              f"{html.escape(y_title)}</text>")

    @staticmethod
    def margins(title: str, legend: bool, x_title: str) -> tuple[int, int, int, int]:
        """(left, right, top, bottom) around the plot area, in SVG units."""
        return 52, 10, 8 + (18 if title else 0) + (18 if legend else 0), 36 if x_title else 22

    def px(self, v: float) -> float:
        span = (self.x1 - self.x0) or 1.0
        return self.left + (v - self.x0) / span * (self.w - self.left - self.right)

    def py(self, v: float) -> float:
        span = (self.y1 - self.y0) or 1.0
        return self.h - self.bottom - (v - self.y0) / span * (self.h - self.top - self.bottom)

    def legend(self, entries: list[tuple[str, str, bool | None]]) -> None:
        """(name, colour, dashed) per entry: a line sample, or a dot where dashed is None."""
        x, y = self.left, self.top - 8
        for name, color, dash in entries:
            if dash is None:
                self.parts.append(f'<circle cx="{x + 5}" cy="{y - 4}" r="4" fill="{color}"/>'
                                  f'<text x="{x + 13}" y="{y}">{html.escape(name)}</text>')
                x += 24 + 7 * len(name)
                continue
            d = ' stroke-dasharray="5 3"' if dash else ""
            self.parts.append(f'<line x1="{x}" x2="{x + 18}" y1="{y - 4}" y2="{y - 4}" stroke="{color}" '
                              f'stroke-width="2"{d}/><text x="{x + 22}" y="{y}">{html.escape(name)}</text>')
            x += 32 + 7 * len(name)

    def svg(self, test_id: str = "") -> str:
        tid = f' data-testid="{html.escape(test_id)}"' if test_id else ""
        return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {self.w} {self.h}" width="100%" role="img"{tid} '
                f'style="max-width: {self.w}px; {FONT}; fill: currentColor; overflow: visible">'
                + "".join(self.parts) + "</svg>")


def line_chart(series: Sequence[Series], x_title: str = "", y_title: str = "", title: str = "",
               width: int = 360, height: int = 220, y_from_zero: bool = False, test_id: str = "") -> str:
    """Lines (with markers and tooltips) over a shared x axis, as one <svg>."""
    xs = [float(x) for s in series for x in s.x]
    ys = [float(y) for s in series for y in s.y if y is not None and math.isfinite(y)]
    f = _Frame(width, height, xs, ys, x_title, y_title, title, legend=len(series) > 1, y_from_zero=y_from_zero)
    if len(series) > 1:
        f.legend([(s.name, s.color, s.dash) for s in series])
    for s in series:
        _draw(f, s)
    return f.svg(test_id)


def _draw(f: _Frame, s: Series, r: float = 2.6) -> None:
    """One series: its line (broken at missing values), its markers with tooltips, its point labels."""
    runs: list[list[str]] = [[]]
    dots = []
    for i, (x, y) in enumerate(zip(s.x, s.y)):
        if y is None or not math.isfinite(y):
            runs.append([])
            continue
        px, py = f.px(float(x)), f.py(float(y))
        runs[-1].append(f"{px:.1f},{py:.1f}")
        if s.markers:
            dots.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="{r}" fill="{s.color}"><title>'
                        f"{html.escape(s.name)}: {_label(float(x))}, {format(float(y), s.fmt)}</title></circle>")
        if s.text is not None and i < len(s.text) and s.text[i]:
            dots.append(f'<text x="{px:.1f}" y="{py - 9:.1f}" text-anchor="middle" font-weight="600">{html.escape(s.text[i])}</text>')
    d = ' stroke-dasharray="5 3"' if s.dash else ""
    for run in runs:
        if len(run) > 1:
            f.parts.append(f'<polyline points="{" ".join(run)}" fill="none" stroke="{s.color}" stroke-width="2"{d}/>')
    f.parts.extend(dots)


def scatter_chart(xy, labels=None, class_names: Sequence[str] | None = None, overlays: Sequence[Series] = (),
                  x_title: str = "", y_title: str = "", width: int = 560, height: int = 440, test_id: str = "",
                  tooltips: bool = True) -> str:
    """Points (N, 2) coloured by class (the Plotly maps' palette), equal units on both axes, with lines drawn over
    them (a path, say). Each point's tooltip is its class and row number (tooltips=False for an SVG shown as an
    image, which has none: half the markup). Meant for up to a few thousand points."""
    pts = [(float(a), float(b)) for a, b in xy]
    over = [(float(x), float(y)) for s in overlays for x, y in zip(s.x, s.y) if y is not None]
    allp = pts + over
    lo_x, hi_x = min((p[0] for p in allp), default=0.0), max((p[0] for p in allp), default=1.0)
    lo_y, hi_y = min((p[1] for p in allp), default=0.0), max((p[1] for p in allp), default=1.0)
    classes = sorted({int(c) for c in labels}) if labels is not None else []
    legend = bool(classes) or bool(overlays)
    # equal units: widen the range that is narrower for its side of the plot
    left, right, top, bottom = _Frame.margins("", legend, x_title)
    pw, ph = width - left - right, height - top - bottom
    span = max((hi_x - lo_x) / pw, (hi_y - lo_y) / ph, 1e-12) * 1.04
    cx, cy = (lo_x + hi_x) / 2, (lo_y + hi_y) / 2
    f = _Frame(width, height, [], [], x_title, y_title, "", legend=legend,
               ranges=(cx - span * pw / 2, cx + span * pw / 2, cy - span * ph / 2, cy + span * ph / 2))

    def name(c: int) -> str:
        return str(class_names[c]) if class_names is not None and 0 <= c < len(class_names) else str(c)

    f.legend([(name(c), CLASS_PALETTE[c % len(CLASS_PALETTE)], None) for c in classes]
             + [(s.name, s.color, s.dash) for s in overlays])
    for i, (x, y) in enumerate(pts):
        c = int(labels[i]) if labels is not None else None
        color = CLASS_PALETTE[c % len(CLASS_PALETTE)] if c is not None else PALETTE[0]
        tip = f"{name(c)} · #{i}" if c is not None else f"#{i}"
        dot = f'<circle cx="{f.px(x):.1f}" cy="{f.py(y):.1f}" r="2.5" fill="{color}" fill-opacity="0.75"'
        f.parts.append(f"{dot}><title>{html.escape(tip)}</title></circle>" if tooltips else f"{dot}/>")
    for s in overlays:
        _draw(f, s, r=3.5)
    return f.svg(test_id)


def bar_chart(x: Sequence[float], y: Sequence[float], x_title: str = "", y_title: str = "", title: str = "",
              color: str = PALETTE[0], width: int = 360, height: int = 220, fmt: str = ".4f", name: str = "",
              test_id: str = "") -> str:
    """Bars at integer x positions (from zero), with a tooltip on each."""
    xs = [float(v) for v in x]
    ys = [float(v) for v in y if math.isfinite(v)]
    ticks = nice_ticks(min(xs, default=0) - 0.5, max(xs, default=1) + 0.5) if len(xs) > 12 else [float(v) for v in x]
    f = _Frame(width, height, [min(xs, default=0) - 0.6, max(xs, default=1) + 0.6], ys, x_title, y_title, title,
               legend=False, x_ticks=ticks, y_from_zero=True)
    bw = max(1.0, 0.7 * (f.px(1) - f.px(0)))
    base = f.py(0.0)
    for xv, yv in zip(xs, y):
        if not math.isfinite(yv):
            continue
        top = f.py(float(yv))
        f.parts.append(f'<rect x="{f.px(xv) - bw / 2:.1f}" y="{min(top, base):.1f}" width="{bw:.1f}" '
                       f'height="{abs(base - top):.1f}" fill="{color}"><title>{html.escape(name or x_title)} '
                       f"{_label(xv)}: {format(float(yv), fmt)}</title></rect>")
    return f.svg(test_id)
