"""Evaluate: held-out likelihood bounds, the reconstruction/KL balance, features for probes, MIG, and two models
compared on the same held-out images; the article's 'probabilistic inference', 'feature extraction',
'semi-supervised learning' and 'balance reconstruction against KL'."""
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import streamlit as st
import torch

import vae
from ui import applications_ui as ui
from ui import plots, quality, runs, safe, state
from ui.safe import md
from ui.widgets import table
from vae import applications as apps
from vae.semi import is_m2

st.title("Evaluate")
top = st.container()
active = state.require_model()
data = ui.dataset_or_stop(active)
L = active.config.latent_dim

try:
    s = ui.memo(("summary", active.key), lambda: apps.summarize(active.model, data))
except ValueError as exc:
    st.error(f"Cannot evaluate this model: {safe.error(exc)}")
    st.stop()

top.markdown("The article says a VAE **models the probability explicitly** and supports probabilistic inference, gives "
             "**features** for dimensionality reduction and **semi-supervised learning**, and warns that training must "
             "**balance the reconstruction loss against the KL divergence** (§6, §7).")
with top:
    ui.claim(f"On {s.n} held-out images this model's −ELBO is {s.neg_elbo:.1f} nats per image: {s.recon:.1f} for "
             f"reconstruction and {s.kl:.1f} for KL ({s.kl / max(s.neg_elbo, 1e-12):.0%}). {s.active} of its {L} latent "
             f"dimensions are active; " + ("none has collapsed to the prior." if s.active == L else
                                           f"the other {L - s.active} collapsed to the prior and carry no information."))

this, other = st.tabs(["This model", "Compare two models"], key="eval_tab", bind="query-params")

with this:
    c = st.columns(5)
    c[4].metric("reconstruction agreement", quality.agreement_text(active) or "–", help=quality.EXPLAINED[0].upper()
                + quality.EXPLAINED[1:] + ". Chance is about 10 %; the pixel reader itself gets about 90 % of the "
                "held-out digits right.")
    quality.wait_ui(active)
    c[0].metric("held-out −ELBO", f"{s.neg_elbo:.1f} nats")
    c[1].metric("reconstruction", f"{s.recon:.1f} nats")
    c[2].metric("KL", f"{s.kl:.1f} nats")
    c[3].metric("active units", f"{s.active} / {L}", help="Burda et al. 2016: dimension u is active if the variance of "
                "its posterior mean across the data exceeds 0.01.")

    st.subheader("KL per latent dimension")
    active_mask = np.asarray(s.mu_variance) > vae.metrics.ACTIVE_UNIT_THRESHOLD
    fig = go.Figure(go.Bar(x=[f"z{i + 1}" for i in range(L)], y=s.kl_per_dim,
                           marker_color=np.where(active_mask, "#4e79a7", "#bab0ac"),
                           customdata=np.asarray(s.mu_variance), hovertemplate="%{x}: KL %{y:.2f} nats, "
                           "Var[μ] %{customdata:.3f}<extra></extra>"))
    fig.update_layout(height=260, margin=dict(l=10, r=10, t=10, b=10), yaxis_title="nats", showlegend=False)
    st.plotly_chart(fig, key="eval_kl_dims")
    st.caption("Blue: active; grey: collapsed to the prior (the KL term pushed them there: the balance at work).")

    st.subheader("Importance-weighted −log p(x)")
    a, b = st.columns(2)
    k = a.select_slider("Importance samples k", [1, 10, 100, 1000], value=100, key="eval_k", bind="query-params",
                        help="k = 1 is the ELBO; larger k gives a tighter upper bound on −log p(x) and takes k times longer.")
    n_iw = b.select_slider("Held-out images", [100, 250, 500, len(data.x_test)], value=min(250, len(data.x_test)),
                           key="eval_iwae_n", bind="query-params")
    key = ("iwae", active.key, k, n_iw)
    result = ui.cached(key)
    if result is None and st.button(f"Estimate with k = {k}", key="eval_iwae_run", icon=":material/calculate:"):
        result = ui.run_with_progress(key, f"Importance sampling, k = {k}, {n_iw} images…",
                                      lambda p: apps.likelihood(active.model, data, k, n_iw, progress=p))
    if result is not None:
        m = st.columns(3)
        m[0].metric(f"IWAE −log p(x), k = {k}", f"{result['iwae']:.2f} nats")
        m[1].metric("−ELBO on the same images", f"{result['neg_elbo']:.2f} nats")
        m[2].metric("gap", f"{result['neg_elbo'] - result['iwae']:.2f} nats")
        st.caption(f"An explicit probability: the model puts held-out images at about e^−{result['iwae']:.0f} each. "
                   "The ELBO is a looser bound on the same quantity.")

    st.subheader("Features: linear probes on latent means versus raw pixels")
    if data.y_train is None:
        st.caption(f"The data set {md(repr(data.name))} has no labels, so there is nothing to probe.")
    else:
        names = {"all" if b is None else str(b): b for b in apps.LABEL_BUDGETS}
        picked = st.pills("Labels per class", list(names), selection_mode="multi", default=list(names), key="eval_budgets")
        budgets = tuple(b for name, b in names.items() if name in picked)  # in a fixed order
        key = ("probes", active.key, budgets)
        rows = ui.cached(key)
        if rows is None and budgets and st.button("Run the probes", key="eval_probe_run", icon=":material/school:"):
            rows = ui.run_with_progress(key, "Fitting logistic regressions…",
                                        lambda p: apps.probes(active.model, data, budgets, progress=p))
        if rows is not None:
            on_latent, on_pixels = f"accuracy on {L}-D latent means", f"accuracy on {int(np.prod(data.shape))} pixels"
            table([{"labels per class": str(r["labels_per_class"] or "all"), "labelled images": r["n_labels"],
                    on_latent: r["latent"], on_pixels: r["pixels"]} for r in rows],
                  formats={on_latent: ".1%", on_pixels: ".1%"})
            few = rows[0]
            st.caption(f"Semi-supervised: the VAE learned from all {len(data.x_train)} images without labels; with "
                       f"{few['n_labels']} labels a classifier on its {L} features scores {few['latent']:.0%}, on the "
                       f"raw pixels {few['pixels']:.0%}.")
        else:
            st.caption("Logistic regression on the training set's latent means and on its pixels, scored on the "
                       "held-out set; takes a few tens of seconds.")

    st.subheader("Disentanglement (MIG)")
    if s.mig is None:
        st.caption("The Mutual Information Gap needs the true generative factors of the images: open a model "
                   "trained on `shapes` (e.g. shapes-mlp-z6) to see it.")
    else:
        st.metric("MIG", f"{s.mig['mig']:.3f}", help="Chen et al. 2018: per factor, the gap in mutual information "
                  "between the two most informative latents, over the factor's entropy; 0 = entangled, "
                  "1 = one latent per factor.")
        mi = np.asarray(s.mig["mutual_information"])  # (L, F)
        fig = go.Figure(go.Heatmap(z=mi.T, x=[f"z{i + 1}" for i in range(L)], y=data.factor_names, colorscale="Blues",
                                   colorbar=dict(title="nats")))
        fig.update_layout(height=260, margin=dict(l=10, r=10, t=10, b=10))
        st.plotly_chart(fig, key="eval_mig")
        best = mi.argmax(axis=0)  # (F,) the most informative latent of each factor
        table([{"factor": f, "most informative latent": f"z{b + 1}", "MIG": g}
               for f, b, g in zip(data.factor_names, best, s.mig["per_factor"])], formats={"MIG": ".3f"})

with other:
    # A and B: any model of this tab (its runs, uploads) or a checkpoint file; A defaults to the current model, B to a
    # sibling of it (same data set, one name extending the other: z16 and z16-beta4), else another of its data set.
    choices = runs.model_choices()
    keys = list(choices)
    current_key = st.session_state.get("model_key")
    if st.session_state.get("eval_for") != current_key:
        if "eval_for" in st.session_state:  # the sidebar's model changed since A and B were set: A follows it
            for k in ("eval_a", "eval_b", "cmp_a", "cmp_b"):
                st.session_state.pop(k, None)
        st.session_state["eval_for"] = current_key
    a_key = st.session_state.get("cmp_a") if st.session_state.get("cmp_a") in choices else current_key
    others = [k for k in keys if k != a_key]
    if not others:
        st.info("There is no other model to compare with: train one (Train) or save one first.")
        st.stop()
    a_label = choices.get(a_key, "")
    kin = [k for k in others if k.startswith("path:") and (Path(k[5:]).stem.startswith(active.label)
                                                           or active.label.startswith(Path(k[5:]).stem))]
    def plain_vae(k: str) -> bool:
        """Compare is for VAEs: an M2 (pages/semi.py compares those) is not a default B."""
        m = runs.resolve(k)
        return m is not None and not is_m2(m.model)

    a_now = runs.resolve(a_key)
    a_data = a_now.ck.dataset if a_now is not None else active.ck.dataset

    def same_data(k: str) -> bool:  # a B of another data set opens the tab on a warning, not a comparison
        m = runs.resolve(k)
        return m is not None and m.ck.dataset == a_data

    candidates = kin + [k for k in others if k not in kin]
    b_default = (st.session_state.get("cmp_b") if st.session_state.get("cmp_b") in others else
                 next((k for k in candidates if plain_vae(k) and same_data(k)),
                      next((k for k in candidates if plain_vae(k)), others[0])))
    left, right = st.columns(2)
    a_pick = left.selectbox("**A:**", keys, index=keys.index(a_key) if a_key in keys else 0, format_func=choices.get,
                            key="eval_a", on_change=lambda: st.session_state.update(cmp_a=st.session_state["eval_a"]))
    b_pick = right.selectbox("**B:**", keys, index=keys.index(b_default), format_func=choices.get, key="eval_b",
                             on_change=lambda: st.session_state.update(cmp_b=st.session_state["eval_b"]))
    picked = []
    for slot, k in (("A", a_pick), ("B", b_pick)):
        try:
            picked.append(runs.resolve(k, strict=True))
        except vae.CheckpointError as exc:  # only files can be broken
            st.error(f"{slot}: {md(Path(k.removeprefix('path:')).name)}: {safe.error(exc)}")
            st.stop()
    a_model, b_model = picked
    if any(m is not None and is_m2(m.model) for m in picked):
        st.info("Compare takes two VAEs; a semi-supervised M2 is compared with its probes on the Semi-supervised page.")
        st.stop()
    if a_model is None or b_model is None:
        st.error("That model cannot be opened any more (the file was removed).")
        st.stop()
    active = a_model  # below, "A" is the picked model (the current one unless changed)
    if active.ck.dataset != data.name:
        data = ui.dataset_or_stop(active)
    if b_model.ck.dataset != active.ck.dataset:
        st.warning(f"{md(b_model.label)} was trained on {md(repr(b_model.ck.dataset))} and {md(active.label)} on "
                   f"{md(repr(active.ck.dataset))}: "
                   "pick two models of the same data set to compare them on the same held-out images.")
        st.stop()
    k_cmp = st.select_slider("Also estimate −log p(x) with k importance samples (0 = skip)", [0, 10, 100], value=0,
                             key="eval_cmp_k", bind="query-params")
    key = ("compare", active.key, b_model.key, k_cmp)
    cmp = ui.cached(key)
    if cmp is None:
        try:
            cmp = ui.run_with_progress(key, "Evaluating both models on the same held-out images…",
                                       lambda p: apps.compare(active.model, b_model.model, data, n_show=10,
                                                              limit=250 if k_cmp else None, iwae_k=k_cmp, progress=p))
        except ValueError as exc:
            st.error(f"Cannot compare: {safe.error(exc)}")
            st.stop()
    beta = lambda m: m.ck.train_config.beta if m.ck.train_config else None  # noqa: E731
    (ra, rb), (ka, kb) = cmp.metrics["reconstruction (nats)"], cmp.metrics["KL (nats)"]
    ui.claim(f"The reconstruction/KL balance, measured: A (β = {beta(active)}) spends {ra:.1f} nats on reconstruction "
             f"and {ka:.1f} on KL; B (β = {beta(b_model)}) spends {rb:.1f} and {kb:.1f}. "
             f"Active units: {cmp.metrics['active units'][0]:.0f} versus {cmp.metrics['active units'][1]:.0f}.")
    rows = dict(cmp.metrics)
    agree = [quality.agreement_future(m) for m in (active, b_model)]
    if all(f.done() and f.exception() is None and f.result() is not None for f in agree):
        rows["reconstruction agreement (%)"] = tuple(100 * f.result() for f in agree)
    else:
        quality.wait_ui(active), quality.wait_ui(b_model)
    col_a, col_b = f"A: {active.label}", f"B: {b_model.label}"
    table([{"metric": name, col_a: a, col_b: b} for name, (a, b) in rows.items()], formats={col_a: ".4g", col_b: ".4g"})
    maps = st.columns(2)
    for col, m in zip(maps, (active, b_model)):
        with col:
            st.markdown(f"**Latent map of {md(m.label)}**")
            mu, _ = state.latents(m)
            proj = state.projection(m)
            fig = plots.latent_map_figure(proj.transform(mu), None if data.y_test is None else data.y_test.numpy(),
                                          data.classes, height=380,
                                          axis_titles=("z₁", "z₂") if proj.method == "identity" else ("PC 1", "PC 2"))
            st.plotly_chart(fig, key=f"eval_map_{m.key}")
    st.markdown("**The same held-out inputs, then A's and B's reconstructions**")
    rows = torch.cat([cmp.inputs, cmp.reconstructions[0], cmp.reconstructions[1]])
    ui.grid(rows, len(cmp.inputs), caption="top: input · middle: A · bottom: B", target=84)
