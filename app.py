"""VAE latent-space explorer: `streamlit run app.py`. Declares the pages and the shared sidebar; nothing else."""
import streamlit as st

from ui.registry import PAGES
from ui import links, workspace
from ui.state import model_sidebar

st.set_page_config(page_title="VAE explorer", page_icon=":material/blur_on:", layout="wide")

sections: dict[str, list] = {}
for spec in PAGES:
    page = st.Page(spec.file, title=spec.title, icon=spec.icon, url_path=spec.url_path or None, default=not spec.url_path)
    sections.setdefault(spec.section, []).append(page)
current = st.navigation(sections)
links.apply_model()  # ?model=NAME, once per tab
model_sidebar()
links.write_model()
workspace.link_ui()  # ?img=DATASET:INDEX and ?b=… once per tab, then kept up to date
workspace.tray()
links.copy_link_ui()
current.run()
