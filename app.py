"""VAE latent-space explorer: `streamlit run app.py`. Declares the pages and the shared sidebar; nothing else."""
import streamlit as st

if __name__ == "__main__":  # a script run (Streamlit runs the script as __main__, once per rerun)
    from ui import preload
    from ui.registry import PAGES
    from ui.state import model_sidebar
    from ui.workspace import tray

    if st.runtime.exists():  # a server (not AppTest): a no-op when it started the preload, a late start otherwise
        preload.start()
    st.set_page_config(page_title="VAE explorer", page_icon=":material/blur_on:", layout="wide")

    sections: dict[str, list] = {}
    for spec in PAGES:
        page = st.Page(spec.file, title=spec.title, icon=spec.icon, url_path=spec.url_path or None,
                       default=not spec.url_path)
        sections.setdefault(spec.section, []).append(page)
    current = st.navigation(sections)
    model_sidebar()
    tray()
    current.run()
else:  # imported by `streamlit run app.py`, which serves `app` (Streamlit 1.67): its lifespan warms the server
    from ui.preload import lifespan

    app = st.App("app.py", lifespan=lifespan)
