"""The reference for bench/app_latency.py's cold start: a one-line Streamlit app, served on the same machine in the
same run, shows how much of the app's cold start is Streamlit's own (server start, the browser loading the frontend)."""
import streamlit as st

st.title("VAE latent-space explorer")
