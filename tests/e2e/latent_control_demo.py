"""Test-only page for the live latent control, outside the app's navigation.

    streamlit run tests/e2e/latent_control_demo.py            # ?model=mnist5k-mlp-z16 picks a shipped checkpoint

tests/e2e/test_latent_control.py and bench/drag_latency.py start it on a free port.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run on its own, the repository is not on the path

import streamlit as st  # noqa: E402

import vae  # noqa: E402
from ui import state  # noqa: E402
from ui.latent_control import latent_control, model_payload  # noqa: E402

st.set_page_config(page_title="Latent control (test page)", layout="wide")
st.session_state["runs"] = st.session_state.get("runs", 0) + 1

if "model" in st.query_params and "demo_model_set" not in st.session_state:
    st.session_state["demo_model_set"] = True
    st.session_state["model_key"] = f"path:{state.CHECKPOINT_DIR / (st.query_params['model'] + '.safetensors')}"
state.model_sidebar()


def train_tiny(arch: str) -> None:
    """A fresh model in seconds: 2 epochs on the 8x8 digits, one thread."""
    data = state.dataset("digits")
    model = vae.build_model(vae.ModelConfig(arch=arch, input_shape=data.shape, latent_dim=2, hidden=64))
    cfg = vae.TrainConfig(dataset="digits", epochs=2, batch_size=64, lr=3e-3, threads=1, device="cpu")
    vae.fit(model, data, cfg)
    model.eval()
    ck = vae.Checkpoint(model, model.cfg, cfg, "digits")
    state.add_session_model(ck, f"tiny-{arch}-{st.session_state['runs']}")
    st.session_state.pop("demo_z", None)


c1, c2 = st.columns(2)
c1.button("Train a tiny MLP", on_click=train_tiny, args=("mlp",))
c2.button("Train a tiny conv", on_click=train_tiny, args=("conv",))
active = state.require_model()
z = latent_control(active, "demo_z", key="demo_control")
payload = model_payload(active.key, active)
st.text(f"python z = {[round(float(v), 4) for v in z]}")
st.text(f"script runs = {st.session_state['runs']} · model {active.label} · payload {payload.id} "
        f"{payload.nbytes / 1e6:.2f} MB · decoded in the {'browser' if payload.in_browser else 'server'}")
