"""The app's pages, as data: app.py builds st.navigation from this list; tests open every entry."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PageSpec:
    file: str  # path relative to the repository root
    title: str
    icon: str
    url_path: str  # "" for the home page
    section: str = "Explore"


PAGES: list[PageSpec] = [
    PageSpec("pages/home.py", "Home", ":material/home:", "", "Start"),
    PageSpec("pages/train.py", "Train", ":material/model_training:", "train", "Start"),
    PageSpec("pages/explore.py", "Explore", ":material/tune:", "explore"),
    PageSpec("pages/map.py", "Latent map", ":material/scatter_plot:", "map"),
    PageSpec("pages/reconstruct.py", "Reconstruct", ":material/draw:", "reconstruct"),
    PageSpec("pages/interpolate.py", "Interpolate", ":material/linear_scale:", "interpolate", "Applications"),
    PageSpec("pages/generate.py", "Generate", ":material/auto_awesome:", "generate", "Applications"),
    PageSpec("pages/denoise.py", "Denoise & complete", ":material/healing:", "denoise", "Applications"),
    PageSpec("pages/evaluate.py", "Evaluate & compare", ":material/analytics:", "evaluate", "Applications"),
    PageSpec("pages/semi.py", "Semi-supervised", ":material/label:", "semi", "Applications"),
]
