"""Attribute directions on Explore: each direction made on the latent map (mean μ of group B − mean μ of group A) is a
named slider ("4 → 9") that moves the current z along it, with its traversal around z.

The map appends {"model", "name", "vector", "source"} to st.session_state["explore_directions"]; only the
directions of the active model are shown. The slider's value is how far along the direction z has been moved
(in units of |B − A|); moving it by t adds t · (B − A) to z.
"""
from __future__ import annotations

import numpy as np
import streamlit as st
import torch

import vae
from ui.safe import md
from ui.widgets import image_row
from vae.data import grid

SPAN = 2.0  # the slider runs over ±SPAN lengths of B − A
STEPS = 9


def _moved(key: str, vector: list[float], name: str) -> None:
    """Slider callback: shift explore_z by the change of the slider's value along the direction."""
    ss = st.session_state
    t, before = float(ss[key]), float(ss.get(f"{key}:last", 0.0))
    z = np.asarray(ss.get("explore_z", np.zeros(len(vector))), dtype=np.float64)
    if z.shape != (len(vector),):
        return
    ss["explore_z"] = (z + (t - before) * np.asarray(vector, dtype=np.float64)).tolist()
    ss[f"{key}:last"] = t
    ss["explore_source"] = f"moved along “{name}” to {t:+.2f}"


def directions_ui(active) -> None:
    """The active model's directions as sliders, each with the images along it around the current z."""
    ss = st.session_state
    mine = [(i, d) for i, d in enumerate(ss.get("explore_directions", [])) if d.get("model") == active.key
            and len(d.get("vector", [])) == active.config.latent_dim]
    if not mine:
        return
    st.subheader("Attribute directions", anchor=False)
    st.caption("Made on the latent map from two selections: mean μ of B − mean μ of A. The slider moves z along the "
               "direction (in lengths of B − A); the row shows z from −1 to +1 lengths along it.")
    z = np.asarray(ss.get("explore_z", np.zeros(active.config.latent_dim)), dtype=np.float32)
    for i, d in mine:
        key = f"explore_direction_{d.get('id', i)}"
        vector = np.asarray(d["vector"], dtype=np.float32)
        if np.linalg.norm(vector) < 1e-9:
            st.warning(f"“{md(d['name'])}” has length zero: it cannot move z.")
            continue
        c1, c2, c3 = st.columns([2, 3, 1], vertical_alignment="center")
        c1.slider(md(d["name"]), -SPAN, SPAN, value=float(ss.get(f"{key}:last", 0.0)), step=0.05, key=key,
                  on_change=_moved, args=(key, d["vector"], d["name"]), help=d.get("source", ""))
        t = torch.linspace(-1, 1, STEPS).unsqueeze(1)
        images = vae.decode(active.model, torch.as_tensor(z)[None] + t * torch.as_tensor(vector)[None])
        left, right = (d["name"].split(" → ") + [""])[:2] if " → " in d["name"] else ("−", "+")
        with c2:
            image_row([grid(images, nrow=STEPS)], [f"← {left} · z · {right} →"], width=STEPS * 40,
                      test_id=f"direction-traversal-{i}")
        if c3.button("Remove", key=f"{key}:remove", icon=":material/close:"):
            ss["explore_directions"] = [e for j, e in enumerate(ss["explore_directions"]) if j != i]
            ss.pop(f"{key}:last", None)
            st.rerun()
