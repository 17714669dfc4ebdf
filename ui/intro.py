"""What the app is, in a few lines: the home page's opening, and all a page shows while the server is still starting.

Torch-free on purpose: app.py draws this (with the navigation) on a fresh server's first run, while ui.preload is
still importing torch, so that a newcomer sees the app and can pick a page seconds before any model is loaded.
"""
from __future__ import annotations

import streamlit as st

from ui import preload
from ui.registry import PAGES

TITLE = "VAE latent-space explorer"
LINKS = [p for p in PAGES if p.url_path in ("train", "explore", "map", "reconstruct")]  # the four the text names


def intro_ui() -> None:
    st.title(TITLE)
    st.markdown(
        "A variational autoencoder squeezes each image into a few numbers $z$ and learns to draw the image back from "
        "them. This app lets you look inside one: **train** a model and watch it learn, **explore** its latent space "
        "with sliders, see the data set as a **map** of clusters, and **reconstruct** an image you upload or draw."
    )
    for col, spec in zip(st.columns(len(LINKS)), LINKS):
        col.page_link(spec.file, label=spec.title, icon=spec.icon)


def starting_ui(home: bool) -> None:
    """A fresh server's first runs: the intro on the home page, a note on any page; the page itself once ready."""
    if home:
        intro_ui()
    _wait_for_server()
    preload.visited()


@st.fragment(run_every=0.25)
def _wait_for_server() -> None:
    if preload.ready():
        st.rerun()  # the whole app: the page this browser asked for, now with its model
    st.caption(":material/hourglass_top: The server is starting: importing PyTorch and loading the default model "
               "(a few seconds, once per server start).")
