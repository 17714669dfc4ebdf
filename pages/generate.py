"""Generate: samples from the prior, each next to its nearest training image; the article's 'new data' and 'blurry' claims."""
import math

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from ui import applications_ui as ui
from ui import safe, state
from vae import applications as apps

st.title("Generate")
top = st.container()
active = state.require_model()
data = ui.dataset_or_stop(active)

with st.container(horizontal=True, vertical_alignment="bottom", gap="medium"):
    n = st.select_slider("Samples", [4, 9, 16, 25, 36, 64], value=16, key="gen_n")
    temperature = st.slider("Temperature (scale of the prior's std)", 0.0, 2.0, 1.0, 0.05, key="gen_temperature",
                            help="z ~ N(0, T² I). T = 1 samples the prior the model was trained with; smaller T stays "
                                 "near the centre (typical, plainer images), larger T wanders to rarer codes.")
    seed = st.number_input("Seed", 0, 2**31 - 1, 0, key="gen_seed")

try:
    gen = apps.generate(active.model, data, n, float(temperature), int(seed))
except ValueError as exc:
    st.error(f"Cannot sample: {safe.error(exc)}")
    st.stop()

top.markdown("The article says a VAE **generates new data** (§6, §7) and warns that its outputs **may be blurry** "
             "(§6, disadvantages).")
with top:
    d_med = float(np.median(gen.nearest_distance))
    novel = d_med >= 0.5 * gen.reference_distance  # a copy would sit near 0
    ui.claim(f"These {n} samples have {gen.grey_samples:.0%} of their pixels grey (between {apps.GREY_LO} and "
             f"{apps.GREY_HI}), against {gen.grey_data:.0%} in the training images: that is the blur. "
             + ("They are not copies" if novel else "Many sit close to a training image")
             + f": a sample's nearest training image lies at a median pixel distance of {d_med:.2f}, while real "
             f"held-out images lie at {gen.reference_distance:.2f} from theirs (a copy would be near 0).")

nrow = math.ceil(math.sqrt(n))
left, right = st.columns(2, gap="large")
with left:
    st.subheader("Samples from the prior")
    g = ui.grid(gen.images, nrow, caption=f"T = {temperature:.2f}, seed {seed}")
    st.download_button("Download PNG", apps.png_bytes(g), file_name=f"samples-T{temperature:.2f}-seed{seed}.png",
                       mime="image/png", icon=":material/download:", on_click="ignore", key="gen_png")
with right:
    st.subheader("Nearest training images")
    ui.grid(data.x_train[gen.nearest_index], nrow, caption="same place in the grid; Euclidean distance in pixel space")

st.subheader("Distance of each sample to its nearest training image")
fig = go.Figure(go.Bar(x=np.arange(n), y=gen.nearest_distance, marker_color="#4e79a7",
                       hovertemplate="sample %{x}: %{y:.2f}<extra></extra>", name="sample"))
fig.add_hline(y=gen.reference_distance, line_dash="dash", line_color="#e15759",
              annotation_text=f"real held-out images: median {gen.reference_distance:.2f}", annotation_position="top right",
              annotation_bgcolor="rgba(255,255,255,0.85)")
fig.update_layout(height=280, margin=dict(l=10, r=10, t=30, b=10), xaxis_title="sample (row by row)",
                  yaxis_title="pixel distance", showlegend=False)
st.plotly_chart(fig, key="gen_distances")
st.caption("A sample far below the dashed line would be a near-copy of a training image.")
