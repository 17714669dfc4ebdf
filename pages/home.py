"""Home: what the app does, the article's formulas with the current model's numbers, and a model card."""
import plotly.graph_objects as go
import streamlit as st

from ui import state

st.title("VAE latent-space explorer")
st.markdown(
    "Train a variational autoencoder, then look inside it: drag the latent sliders and watch the decoder answer, "
    "see the encoded data as a map, draw or upload an image and see where it lands."
)
active = state.require_model()
ck = active.ck
m = ck.metrics
recon, kl = m.get("recon"), m.get("kl")

left, right = st.columns([3, 2])
with left:
    st.subheader("The model, in the article's terms")
    st.markdown("The encoder maps $x$ to $\\mu$ and $\\log\\sigma^2$; a sample is drawn by the **reparameterization**")
    st.latex(r"z = \mu + \sigma \odot \epsilon,\qquad \epsilon \sim \mathcal{N}(0, I)")
    st.markdown("and the decoder maps $z$ back to an image. Training minimises the negative ELBO, in nats per image:")
    st.latex(r"\mathcal{L} = \underbrace{-\mathbb{E}_{q(z|x)}\log p(x|z)}_{\text{reconstruction}}"
             r"\; + \; \underbrace{-\tfrac12\sum_i\left(1 + \log\sigma_i^2 - \mu_i^2 - \sigma_i^2\right)}_{\mathrm{KL}(q(z|x)\,\|\,p(z))}")
    if isinstance(recon, (int, float)) and isinstance(kl, (int, float)):
        st.latex(rf"\text{{held-out: }}\; {recon + kl:.1f} \;=\; {recon:.1f} \;+\; {kl:.1f}\ \text{{nats}}")
with right:
    st.subheader("Model card")
    cfg = ck.model_config
    tc = ck.train_config
    rows = {"data set": ck.dataset, "architecture": cfg.arch, "input": "×".join(map(str, cfg.input_shape)),
            "latent dimensions": cfg.latent_dim, "hidden width": cfg.hidden, "likelihood": cfg.likelihood}
    if tc is not None:
        rows.update({"β": tc.beta, "epochs": len(ck.history), "batch size": tc.batch_size, "learning rate": tc.lr})
    st.table({"": list(rows), "value": [str(v) for v in rows.values()]})

if ck.history:
    epochs = [h["epoch"] for h in ck.history]
    fig = go.Figure()
    for key, name in [("train_neg_elbo", "train −ELBO"), ("test_neg_elbo", "held-out −ELBO")]:
        fig.add_scatter(x=epochs, y=[h.get(key) for h in ck.history], name=name, mode="lines")
    fig.update_layout(height=300, margin=dict(l=10, r=10, t=30, b=10), xaxis_title="epoch", yaxis_title="nats",
                      title="Training history")
    st.plotly_chart(fig, width="stretch")
