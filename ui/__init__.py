"""Streamlit glue: the only place besides pages/ and app.py that imports streamlit. Holds cached loading and the
per-session current model; everything it computes it asks of the `vae` package."""
