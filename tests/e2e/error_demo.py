"""Test-only page whose script raises, to see what a browser is shown of an uncaught exception (tests/e2e/test_abuse.py).

It runs under the app's .streamlit/config.toml (the server starts in the repository root), so client.showErrorDetails
is the app's own setting.
"""
from pathlib import Path

import streamlit as st

st.title("A page that fails")
raise RuntimeError(f"could not open {Path(__file__).resolve().parents[2] / 'checkpoints' / 'secret.safetensors'}")
