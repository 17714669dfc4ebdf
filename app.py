"""VAE latent-space explorer: `streamlit run app.py`. Declares the pages and the shared sidebar; nothing else."""
import streamlit as st

from ui.registry import PAGES
from ui.state import model_sidebar
from ui.workspace import tray

st.set_page_config(page_title="VAE explorer", page_icon=":material/blur_on:", layout="wide")

sections: dict[str, list] = {}
for spec in PAGES:
    page = st.Page(spec.file, title=spec.title, icon=spec.icon, url_path=spec.url_path or None, default=not spec.url_path)
    sections.setdefault(spec.section, []).append(page)
current = st.navigation(sections)
model_sidebar()
tray()
current.run()
