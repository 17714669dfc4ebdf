"""Plotly figures shared by pages. Render-only: data comes in computed."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from ui.safe import plotly_text
from ui import svgplot
from ui.svgplot import CLASS_PALETTE

SVG_MAX_POINTS = 2500  # up to this many points a scatter is SVG (go.Scatter), above it WebGL (go.Scattergl)
PALETTE = list(CLASS_PALETTE)


def latent_map_figure(xy: np.ndarray, labels: np.ndarray | None = None, class_names: list[str] | None = None,
                      color: np.ndarray | None = None, color_title: str = "", height: int = 520,
                      axis_titles: tuple[str, str] = ("z₁", "z₂")) -> go.Figure:
    """Scatter of 2-D latent positions, one trace per class (legend toggles) or one coloured by `color`.

    Each point's customdata is its row index, so click events can say which point was picked. The held-out maps of
    the pages (1,000 points) are SVG: WebGL costs a context per trace (ten classes, ten contexts; browsers keep about
    sixteen) and, on a machine without a GPU, a software renderer: opening /interpolate in headless Chromium took
    ~1.3 s with WebGL traces (bench/app_latency.py, issue 13). Larger maps stay WebGL.
    """
    fig = go.Figure()
    idx = np.arange(len(xy))
    Trace = go.Scatter if len(xy) <= SVG_MAX_POINTS else go.Scattergl
    if labels is not None and color is None:
        for c in np.unique(labels):
            m = labels == c
            name = plotly_text(class_names[int(c)] if class_names and int(c) < len(class_names) else c)
            fig.add_trace(Trace(x=xy[m, 0], y=xy[m, 1], mode="markers", name=name, customdata=idx[m],
                                marker=dict(size=5, color=PALETTE[int(c) % len(PALETTE)], opacity=0.75),
                                hovertemplate=f"{name} · #%{{customdata}}<extra></extra>"))
    else:
        fig.add_trace(Trace(x=xy[:, 0], y=xy[:, 1], mode="markers", customdata=idx, name="held-out",
                            marker=dict(size=5, color=color, colorscale="Viridis", opacity=0.8,
                                        colorbar=dict(title=color_title) if color is not None else None),
                            hovertemplate="#%{customdata}<extra></extra>"))
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=10, b=10), legend=dict(itemsizing="constant"),
                      xaxis_title=axis_titles[0], yaxis_title=axis_titles[1], dragmode="pan")
    fig.update_yaxes(scaleanchor="x", scaleratio=1)
    return fig


def add_click_grid(fig: go.Figure, grid_xy: np.ndarray) -> None:
    """Invisible points under the data: Plotly reports clicks only on points, so these make empty space clickable."""
    fig.add_trace(go.Scattergl(x=grid_xy[:, 0], y=grid_xy[:, 1], mode="markers", name="empty space", showlegend=False,
                               marker=dict(size=6, color="rgba(0,0,0,0)"), hoverinfo="none"))


def add_highlight(fig: go.Figure, xy: np.ndarray, ellipse: np.ndarray | None = None, name: str = "picked") -> None:
    """A ring on the picked position and, if given, its posterior ellipse; neither is clickable."""
    if ellipse is not None:
        fig.add_trace(go.Scatter(x=ellipse[:, 0], y=ellipse[:, 1], mode="lines", name="2σ posterior", hoverinfo="skip",
                                 line=dict(color="#222", width=1.5, dash="dot")))
    fig.add_trace(go.Scatter(x=[xy[0]], y=[xy[1]], mode="markers", name=name, hoverinfo="skip",
                             marker=dict(size=16, color="rgba(0,0,0,0)", line=dict(color="#d62728", width=3))))


def curves_figure(history: list[dict], height: int = 280) -> go.Figure:
    """Training curves side by side: reconstruction, KL and -ELBO per epoch, train solid and held-out dashed."""
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=3, subplot_titles=("reconstruction (nats)", "KL (nats)", "−ELBO (nats)"),
                        horizontal_spacing=0.07)
    epochs = [h["epoch"] for h in history]
    for col, term in enumerate(("recon", "kl", "neg_elbo"), start=1):
        for split, dash, color in (("train", "solid", "#4e79a7"), ("test", "dash", "#e15759")):
            ys = [h.get(f"{split}_{term}") for h in history]
            fig.add_trace(go.Scatter(x=epochs, y=ys, mode="lines+markers", line=dict(dash=dash, color=color),
                                     marker=dict(size=4), name="train" if split == "train" else "held-out",
                                     legendgroup=split, showlegend=col == 1), row=1, col=col)
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=60, b=10),
                      legend=dict(orientation="h", x=1, xanchor="right", y=1.12, yanchor="bottom"))
    fig.update_xaxes(title_text="epoch", rangemode="tozero")
    return fig


def curves_svg(history: list[dict], height: int = 230) -> str:
    """curves_figure as inline SVG (three panels side by side, wrapping on narrow screens): for pages that show a
    finished history, where a Plotly chart's mount (~100-150 ms of the browser's main thread) is not worth its zoom.
    Up to 30 epochs each point has a tooltip; longer histories are lines only (markup the browser parses fast)."""
    epochs = [h["epoch"] for h in history]
    panels = []
    for term, title in (("recon", "reconstruction (nats)"), ("kl", "KL (nats)"), ("neg_elbo", "−ELBO (nats)")):
        series = [svgplot.Series("train" if split == "train" else "held-out", epochs, [h.get(f"{split}_{term}") for h in history],
                                 color=color, dash=split == "test", fmt=".2f", markers=len(history) <= 30)
                  for split, color in (("train", svgplot.PALETTE[0]), ("test", svgplot.PALETTE[1]))]
        panels.append(svgplot.line_chart(series, x_title="epoch", title=title, width=330, height=height))
    cells = "".join(f'<div style="flex: 1 1 280px; min-width: 0;">{p}</div>' for p in panels)
    return f'<div data-testid="history-curves" style="display: flex; flex-wrap: wrap; gap: 12px;">{cells}</div>'


def kl_bars_figure(kl_per_dim: list[float], threshold: float, height: int = 240) -> go.Figure:
    """Held-out KL of each latent dimension; bars under `threshold` (collapsed dimensions) in red."""
    kl = np.asarray(kl_per_dim, dtype=np.float64)
    colors = ["#e15759" if v < threshold else "#4e79a7" for v in kl]
    fig = go.Figure(go.Bar(x=[f"z{i + 1}" for i in range(len(kl))], y=kl, marker_color=colors,
                           hovertemplate="%{x}: %{y:.3f} nats<extra></extra>"))
    fig.add_hline(y=threshold, line=dict(color="#e15759", width=1, dash="dot"))
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=10, b=10), yaxis_title="KL (nats)",
                      yaxis_type="log" if kl.max(initial=0) / max(kl.min(initial=1), 1e-6) > 1e3 else "linear")
    return fig


def posterior_figure(mu: np.ndarray, sigma: np.ndarray, height: int = 260) -> go.Figure:
    """q(z|x) per dimension: mu with ±2 sigma bars, against the prior's ±2 band."""
    L = len(mu)
    names = [f"z{i + 1}" for i in range(L)]
    fig = go.Figure()
    fig.add_hrect(y0=-2, y1=2, fillcolor="#bab0ac", opacity=0.2, line_width=0, layer="below")
    fig.add_trace(go.Scatter(x=names, y=mu, mode="markers", name="μ ± 2σ", marker=dict(size=8, color="#4e79a7"),
                             error_y=dict(type="data", array=2 * np.asarray(sigma), color="#4e79a7", thickness=1.5),
                             customdata=np.asarray(sigma), hovertemplate="%{x}: μ = %{y:.2f}, σ = %{customdata:.3f}<extra></extra>"))
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=30, b=10), showlegend=False, yaxis_title="z",
                      title=dict(text="posterior per dimension: μ ± 2σ (grey band: the prior's ±2)", font=dict(size=13)))
    return fig


def overlay_figure(runs: dict[str, list[dict]], height: int = 300) -> go.Figure:
    """Several runs' held-out curves (train dotted) on shared axes: reconstruction, KL and -ELBO per epoch."""
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=3, subplot_titles=("reconstruction (nats)", "KL (nats)", "−ELBO (nats)"),
                        horizontal_spacing=0.07)
    for i, (name, history) in enumerate(runs.items()):
        color = PALETTE[i % len(PALETTE)]
        epochs = [h["epoch"] for h in history]
        for col, term in enumerate(("recon", "kl", "neg_elbo"), start=1):
            for split, dash in (("test", "solid"), ("train", "dot")):
                ys = [h.get(f"{split}_{term}") for h in history]
                fig.add_trace(go.Scatter(x=epochs, y=ys, mode="lines" if len(epochs) > 1 else "markers",  # 1 epoch: a dot
                                         line=dict(dash=dash, color=color, width=2),
                                         name=name if split == "test" else f"{name} (train)", legendgroup=name,
                                         showlegend=col == 1 and split == "test",
                                         hovertemplate=f"{name} · {split} · epoch %{{x}}: %{{y:.1f}}<extra></extra>"),
                              row=1, col=col)
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=60, b=10),
                      legend=dict(orientation="h", x=0, y=1.15, yanchor="bottom"))
    fig.update_xaxes(title_text="epoch", rangemode="tozero")
    return fig
