"""Plotly figures shared by pages. Render-only: data comes in computed."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"]


def latent_map_figure(xy: np.ndarray, labels: np.ndarray | None = None, class_names: list[str] | None = None,
                      color: np.ndarray | None = None, color_title: str = "", height: int = 520,
                      axis_titles: tuple[str, str] = ("z₁", "z₂")) -> go.Figure:
    """WebGL scatter of 2-D latent positions, one trace per class (legend toggles) or one coloured by `color`.

    Each point's customdata is its row index, so click events can say which point was picked.
    """
    fig = go.Figure()
    idx = np.arange(len(xy))
    if labels is not None and color is None:
        for c in np.unique(labels):
            m = labels == c
            name = class_names[int(c)] if class_names and int(c) < len(class_names) else str(c)
            fig.add_trace(go.Scattergl(x=xy[m, 0], y=xy[m, 1], mode="markers", name=name, customdata=idx[m],
                                       marker=dict(size=5, color=PALETTE[int(c) % len(PALETTE)], opacity=0.75),
                                       hovertemplate=f"{name} · #%{{customdata}}<extra></extra>"))
    else:
        fig.add_trace(go.Scattergl(x=xy[:, 0], y=xy[:, 1], mode="markers", customdata=idx, name="held-out",
                                   marker=dict(size=5, color=color, colorscale="Viridis", opacity=0.8,
                                               colorbar=dict(title=color_title) if color is not None else None),
                                   hovertemplate="#%{customdata}<extra></extra>"))
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=10, b=10), legend=dict(itemsizing="constant"),
                      xaxis_title=axis_titles[0], yaxis_title=axis_titles[1], dragmode="pan")
    fig.update_yaxes(scaleanchor="x", scaleratio=1)
    return fig
