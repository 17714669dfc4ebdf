"""Home: what the app does, the article's formulas with the current model's numbers, and a model card."""
from __future__ import annotations

import streamlit as st

from ui import quality, safe, state
from ui.intro import intro_ui
from ui.plots import curves_svg
from ui.safe import md
from ui.widgets import key_value_table, show_image, show_svg
from vae.reconstruction import reparameterization_example

EXAMPLE_INDEX = 0  # the held-out image whose numbers illustrate the reparameterization


def fmt_vec(v, n: int = 4) -> str:
    """A vector as LaTeX, the first n entries."""
    body = ",\\ ".join(f"{float(x):+.2f}" for x in v[:n])
    more = ",\\ \\dots" if len(v) > n else ""
    return f"({body}{more})"


@st.fragment
def reparameterization_ui(active: state.ActiveModel) -> None:
    """z = mu + sigma * eps for one held-out image, with the model's numbers; waits for the data set if needed."""
    name = active.ck.dataset
    state.prefetch_dataset_later(name)
    if not state.dataset_ready(name):
        st.caption(f"(loading {md(name)} to show the numbers for one of its images…)")
        poll_dataset(name)
        return
    try:
        x = state.dataset_for(active).x_test[EXAMPLE_INDEX]
    except Exception as exc:  # noqa: BLE001 - the formulas stand without the example
        st.caption(f"(no example: the data set cannot be loaded: {safe.error(exc)})")
        return
    ex = reparameterization_example(active.model, x, seed=st.session_state.get("home_eps", 0))
    L = len(ex["mu"])
    st.markdown(f"For held-out image #{EXAMPLE_INDEX}" + (f" (first 4 of {L} dimensions)" if L > 4 else "") + ":")
    st.latex(r"\begin{aligned}"
             rf"\mu &= {fmt_vec(ex['mu'])} \\ \sigma &= {fmt_vec(ex['sigma'])} \\ "
             rf"\epsilon &= {fmt_vec(ex['eps'])} \\ z = \mu + \sigma \odot \epsilon &= {fmt_vec(ex['z'])}"
             r"\end{aligned}")
    c1, c2, c3 = st.columns([1, 1, 2], vertical_alignment="center")
    with c1:
        show_image(x, 112, caption="x")
    with c2:
        show_image(ex["x_hat"], 112, caption="decoded z", test_id="home-decoded")
    c3.button("Draw another ε", icon=":material/casino:", key="home_redraw",
              on_click=lambda: st.session_state.update(home_eps=st.session_state.get("home_eps", 0) + 1))
    recon, kl = round(float(ex["recon"]), 1), round(float(ex["kl"]), 1)  # the shown total is the sum of the shown terms
    st.latex(rf"\text{{this image: }}\; {recon + kl:.1f} \;=\; "
             rf"\underbrace{{{recon:.1f}}}_{{\text{{reconstruction at }} z = \mu}} + "
             rf"\underbrace{{{kl:.1f}}}_{{\mathrm{{KL}}}}\ \text{{nats}}")


@st.fragment(run_every=0.5)
def poll_dataset(name: str) -> None:
    if state.dataset_ready(name):
        st.rerun()


def formulas_ui(active: state.ActiveModel) -> None:
    m = active.ck.metrics
    recon, kl = m.get("recon"), m.get("kl")
    st.subheader("The model, in the article's terms", anchor=False)
    st.markdown("The encoder maps an image $x$ to $\\mu$ and $\\log\\sigma^2$, one pair per latent dimension. A latent "
                "vector is drawn by the **reparameterization**, which keeps the sample differentiable in $\\mu$ and $\\sigma$:")
    st.latex(r"z = \mu + \sigma \odot \epsilon,\qquad \epsilon \sim \mathcal{N}(0, I)")
    reparameterization_ui(active)
    st.markdown("The decoder maps $z$ back to an image. Training minimises the negative ELBO, in nats per image:")
    st.latex(r"-\mathrm{ELBO} = \underbrace{-\mathbb{E}_{q(z|x)}\log p(x|z)}_{\text{reconstruction}}"
             r"\; + \; \underbrace{-\tfrac12\sum_i\left(1 + \log\sigma_i^2 - \mu_i^2 - \sigma_i^2\right)}_{\mathrm{KL}(q(z|x)\,\|\,p(z))}")
    if isinstance(recon, (int, float)) and isinstance(kl, (int, float)):
        recon, kl = round(recon, 1), round(kl, 1)  # rounded first, so that the terms add up to the total shown
        st.latex(rf"\text{{held-out average: }}\; {recon + kl:.1f} \;=\; {recon:.1f} \;+\; {kl:.1f}\ \text{{nats}}")


def model_card_ui(active: state.ActiveModel) -> None:
    ck = active.ck
    st.subheader("Model card", anchor=False)
    cfg, tc = ck.model_config, ck.train_config
    rows = {"name": active.label, "data set": ck.dataset, "architecture": cfg.arch,
            "input": "×".join(map(str, cfg.input_shape)), "latent dimensions": cfg.latent_dim,
            "hidden width": cfg.hidden, "likelihood": "Bernoulli (BCE)" if cfg.likelihood == "bernoulli" else
            f"Gaussian (MSE), σ = {cfg.obs_std}"}
    if tc is not None:
        rows.update({"β": tc.beta, "KL warm-up": f"{tc.warmup_epochs:g} epochs", "epochs": len(ck.history),
                     "batch size": tc.batch_size, "learning rate": tc.lr, "seed": tc.seed})
    m = ck.metrics
    for key, label in [("recon", "held-out reconstruction"), ("kl", "held-out KL"), ("neg_elbo", "held-out −ELBO"),
                       ("iwae_nll", "held-out IWAE NLL")]:
        if isinstance(m.get(key), (int, float)):
            rows[label] = f"{m[key]:.2f} nats"
    agreement = quality.agreement_text(active)
    if agreement is not None:
        rows["reconstruction agreement"] = agreement
    if isinstance(m.get("seconds"), (int, float)):
        rows["training time"] = f"{m['seconds']:.0f} s"
    key_value_table(rows)  # cells escaped with ui.safe.md: a name cannot be a link
    if agreement is not None:
        st.caption(f"Reconstruction agreement: {quality.EXPLAINED}")
    quality.wait_ui(active)


intro_ui()
active = state.require_model()
left, right = st.columns([3, 2], gap="large")
with left:
    formulas_ui(active)
with right:
    model_card_ui(active)
if active.ck.history:
    st.subheader("Training history", anchor=False)
    show_svg(curves_svg(active.ck.history))
