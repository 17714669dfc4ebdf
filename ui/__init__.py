"""Streamlit glue: the only place besides pages/ and app.py that imports streamlit. Holds cached loading and the
per-session current model; everything it computes it asks of the `vae` package."""


def _route_through_app() -> None:
    """Make a direct link to a page (say /generate) on a fresh server run app.py's navigation.

    Until some run has called st.navigation, Streamlit 1.67 treats a folder named pages/ as a v1 multipage app and
    runs pages/generate.py alone: no sidebar, no model picker. Every page imports `ui`, so the first such run lands
    here: switch v1 off and rerun; the rerun executes app.py, whose st.Page(url_path="generate") has the same page
    hash, so the user stays on the page they asked for.
    """
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        import streamlit as st

        PagesManager.uses_pages_directory = False
        st.rerun()


_route_through_app()
