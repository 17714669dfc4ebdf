"""VAE latent-space explorer: `streamlit run app.py`. Declares the pages and the shared sidebar; nothing else."""
from pathlib import Path

import streamlit as st

if __name__ == "__main__":  # a script run (Streamlit runs the script as __main__, once per rerun)
    from ui import intro, preload  # torch-free, as is everything up to st.navigation
    from ui.registry import PAGES

    # A file, not ":material/blur_on:", whose favicon the browser fetches from fonts.gstatic.com (fails offline).
    st.set_page_config(page_title="VAE explorer", page_icon=str(Path(__file__).parent / "ui" / "favicon.png"),
                       layout="wide")

    sections: dict[str, list] = {}
    for spec in PAGES:
        page = st.Page(spec.file, title=spec.title, icon=spec.icon, url_path=spec.url_path or None,
                       default=not spec.url_path)
        sections.setdefault(spec.section, []).append(page)
    current = st.navigation(sections)
    if preload.warming():  # a fresh server still importing torch: the intro now, the page once ready
        intro.starting_ui(home=not current.url_path)
        st.stop()

    from ui import links, workspace
    from ui.state import model_sidebar

    links.apply_model()  # ?model=NAME, once per tab
    model_sidebar()
    workspace.link_ui()  # ?img=DATASET:INDEX and ?b=…, once per tab
    try:
        current.run()
    finally:  # also after st.stop() in a page
        # The rest of the sidebar after the page: the browser renders a run's messages in order, one by one, and
        # these (the tray, the link button, the notices) are not what the user is waiting for. The tray also shows
        # an upload made on this very run.
        workspace.tray(st.sidebar.container())
        links.copy_link_ui()
        links.write_model()
        workspace.write_link()
        links.notices_ui(st.sidebar)
else:  # imported by `streamlit run app.py`, which serves `app` (Streamlit 1.67): its lifespan warms the server
    from ui.preload import lifespan

    app = st.App("app.py", lifespan=lifespan)
