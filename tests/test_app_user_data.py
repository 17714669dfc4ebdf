"""AppTest runs of the user's own data in the web UI: uploads on Train, their privacy and cleanup, the data root."""
from __future__ import annotations

import io
import json
import re
import shutil
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

import vae
from tests.zipcraft import bomb_zip
from ui import state, user_data
from vae import imagesets

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 120
SHIPPED = ROOT / "checkpoints" / "mnist5k-mlp-z2.safetensors"


def unescaped(markdown: str) -> str:
    """A message as the user reads it: user text in messages is markdown-escaped (ui.safe.md)."""
    return re.sub(r"\\(.)", r"\1", markdown)


def bars_zip(n: int = 15) -> bytes:
    """Two labelled sub-folders: horizontal bars and vertical columns, 16x16, under one shared top folder."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for label, cls in enumerate(["bars", "columns"]):
            for i in range(n):
                a = np.zeros((16, 16), np.uint8)
                if label == 0:
                    a[3 + i % 9: 6 + i % 9, 2:14] = 255
                else:
                    a[2:14, 3 + i % 9: 6 + i % 9] = 255
                im = io.BytesIO()
                Image.fromarray(a).save(im, "PNG")
                zf.writestr(f"shapes/{cls}/{i}.png", im.getvalue())
    return buf.getvalue()


@pytest.fixture(autouse=True)
def upload_dir(tmp_path, monkeypatch):
    folder = tmp_path / "uploads"
    monkeypatch.setenv("VAE_EXPLORER_UPLOAD_DIR", str(folder))
    monkeypatch.delenv("VAE_EXPLORER_DATA_ROOT", raising=False)
    return folder


@pytest.fixture
def loads(monkeypatch):
    """Every data set name ui.state's loader was asked for (the real loader still runs)."""
    names: list[str] = []
    real = vae.load_dataset

    def spy(name, **kw):
        names.append(name)
        return real(name, **kw)
    monkeypatch.setattr(vae, "load_dataset", spy)
    return names


def train_page() -> AppTest:
    return AppTest.from_file(str(ROOT / "pages" / "train.py"), default_timeout=TIMEOUT).run()


def upload(at: AppTest, files: list[tuple[str, bytes]], colour: str = "grey", size: int = 16) -> AppTest:
    at.get("file_uploader")[0].set_value([(n, d, "application/octet-stream") for n, d in files])
    at.radio(key="ud_colour").set_value(colour)
    at.select_slider(key="ud_size").set_value(size)
    return next(b for b in at.button if b.label == "Make a data set").click().run()


def test_upload_a_labelled_zip_then_train_on_it(upload_dir, loads):
    at = upload(train_page(), [("shapes.zip", bars_zip())])
    assert [e.value for e in at.exception] == [] and [e.value for e in at.error] == []
    assert "Made a data set of 30 images" in unescaped(at.success[0].value)
    name = at.selectbox(key="tr_dataset").value
    assert name.startswith("upload:") and "shapes.zip · 30 images, 16×16 grey, 2 labels" in at.text[0].value
    token = name[len("upload:"):]
    assert (upload_dir / token / "data.npz").is_file()

    at.number_input(key="tr_epochs").set_value(1)
    next(b for b in at.button if b.label == "Start training").click().run()
    job = at.session_state["train_job"]
    job.join(60)
    assert job.result.status == "finished" and job.classes == ["bars", "columns"]
    assert job.label == f"shapes-mlp-z{job.model_config.latent_dim}"  # a default save name from the file, not the token
    assert sorted(set(job.map_labels.tolist())) == [0, 1]
    assert job.model_config.input_shape == (1, 16, 16) and name in loads
    assert name in state._DATA
    at.run()
    next(b for b in at.button if b.label == "Remove").click().run()
    assert name not in state._DATA and not (upload_dir / token).exists()  # the loaded copy goes with the folder


def test_uploaded_image_files_in_rgb():
    files = []
    for i in range(12):
        im = io.BytesIO()
        Image.fromarray(np.full((10, 12, 3), (i * 20, 100, 200 - i * 10), np.uint8)).save(im, "JPEG" if i % 2 else "PNG")
        files.append((f"photo{i}.{'jpg' if i % 2 else 'png'}", im.getvalue()))
    at = upload(train_page(), files, colour="RGB", size=8)
    assert [e.value for e in at.error] == []
    assert "12 files · 12 images, 8×8 RGB" in at.text[0].value


def test_a_refused_archive_says_why_and_keeps_nothing(upload_dir):
    at = upload(train_page(), [("bomb.zip", bomb_zip())])
    assert [e.value for e in at.exception] == []
    assert "Not used: the archive's images would unpack to 2,880 MB; the limit is 512 MB" in unescaped(at.error[0].value)
    assert not upload_dir.exists() or not any(upload_dir.iterdir())
    assert not at.text  # no upload listed


def test_the_per_tab_cap_says_what_it_refused(monkeypatch):
    monkeypatch.setattr(user_data, "SESSION_CAP_MB", 0)
    at = upload(train_page(), [("shapes.zip", bars_zip())])
    assert "refused: 30 images would take 0.0 MB and this tab's uploads already take 0.0 MB; the limit per tab is 0 MB" \
        in unescaped(at.error[0].value)


def test_the_per_server_cap_counts_every_tab(monkeypatch):
    at = upload(train_page(), [("shapes.zip", bars_zip())])
    monkeypatch.setattr(user_data, "SERVER_CAP_MB", 0)
    at = upload(train_page(), [("shapes.zip", bars_zip())])  # another tab
    assert "the server holds 0 MB of uploads from all tabs and its limit is 0 MB" in unescaped(at.error[0].value)


def test_an_upload_belongs_to_its_tab_only(loads):
    at = upload(train_page(), [("shapes.zip", bars_zip())])
    name = at.selectbox(key="tr_dataset").value
    other = train_page()  # another browser tab
    assert name not in other.selectbox(key="tr_dataset").options
    loads.clear()

    def other_tab_loads() -> None:
        import streamlit as st

        import vae
        from ui import state

        try:
            state.dataset(st.session_state["name"])
        except vae.DataError as exc:
            st.error(str(exc))
    at = AppTest.from_function(other_tab_loads, default_timeout=TIMEOUT)
    at.session_state["name"] = name
    at.run()
    assert "uploaded in another browser tab" in unescaped(at.error[0].value)
    assert loads == []


def test_removing_an_upload_deletes_its_folder(upload_dir):
    at = upload(train_page(), [("shapes.zip", bars_zip())])
    token = at.selectbox(key="tr_dataset").value[len("upload:"):]
    next(b for b in at.button if b.label == "Remove").click().run()
    assert not (upload_dir / token).exists() and not at.text


def test_the_sweep_removes_folders_whose_session_or_server_has_gone(upload_dir, monkeypatch):
    x = np.zeros((10, 1, 4, 4), np.uint8)
    live = imagesets.save_upload(x, [""] * 10, "a", owner="live-session")
    gone = imagesets.save_upload(x, [""] * 10, "b", owner="gone-session")
    dead_server = imagesets.save_upload(x, [""] * 10, "c", owner="s")
    meta = json.loads((upload_dir / dead_server / "meta.json").read_text())
    (upload_dir / dead_server / "meta.json").write_text(json.dumps({**meta, "pid": 2**22 + 12345}))  # no such process
    monkeypatch.setattr(user_data, "_session_alive", lambda sid: sid == "live-session")
    now = time.time()
    assert user_data.sweep(now) == [dead_server]  # the gone session is within Streamlit's reconnect window
    assert sorted(user_data.sweep(now + user_data.GRACE_S + 1)) == [gone]
    assert [t for t, _, _ in imagesets.upload_folders()] == [live]


def test_the_finalizer_removes_a_sessions_folders_when_the_session_is_dropped(upload_dir):
    import gc

    space = user_data._Space("s")
    token = imagesets.save_upload(np.zeros((10, 1, 4, 4), np.uint8), [""] * 10, "a", owner="s")
    space.tokens[token] = {}
    del space
    gc.collect()
    assert not (upload_dir / token).exists()


# ---------------------------------------------------------------- server paths: only under the data root
@pytest.fixture
def outside(tmp_path):
    """A private folder of images outside any data root."""
    folder = tmp_path / "private"
    folder.mkdir()
    for i in range(12):
        Image.fromarray(np.full((8, 8), i * 20, np.uint8)).save(folder / f"{i}.png")
    return folder


def start(at: AppTest, folder: str) -> AppTest:
    at.selectbox(key="tr_dataset").set_value("folder…")
    at.text_input(key="tr_folder").set_value(folder)
    return next(b for b in at.button if b.label == "Start training").click().run()


def test_a_typed_path_is_refused_without_a_data_root(outside, loads):
    at = start(train_page(), str(outside))
    assert "this server reads no folders named from the web page" in unescaped(at.error[0].value)
    assert "VAE_EXPLORER_DATA_ROOT=/a/folder" in unescaped(at.error[0].value) and loads == []


def test_a_typed_path_outside_the_root_is_refused_and_inside_is_read(tmp_path, outside, loads, monkeypatch):
    root = tmp_path / "shared"
    shutil.copytree(outside, root / "ok")
    (root / "sneaky").symlink_to(outside, target_is_directory=True)
    monkeypatch.setenv("VAE_EXPLORER_DATA_ROOT", str(root))
    for path in [str(outside), str(root / ".." / "private"), str(root / "sneaky")]:
        at = start(train_page(), path)
        assert "that path is outside the server's data root" in unescaped(at.error[0].value), path
    assert loads == []
    at = start(train_page(), str(root / "ok"))
    assert [e.value for e in at.error] == [] and loads == [f"folder:{root / 'ok'}"]
    at.session_state["train_job"].stop()


def test_the_data_root_can_be_given_after_double_dash(tmp_path, monkeypatch):
    monkeypatch.setattr("sys.argv", ["app.py", "--data-root", str(tmp_path)])
    assert user_data.data_root() == tmp_path.resolve()
    monkeypatch.setattr("sys.argv", ["app.py", f"--data-root={tmp_path}"])
    assert user_data.data_root() == tmp_path.resolve()


def test_a_checkpoint_naming_a_private_folder_never_makes_the_server_read_it(tmp_path, outside, loads):
    ck = vae.load_checkpoint(SHIPPED)
    crafted = tmp_path / "crafted.safetensors"
    vae.save_checkpoint(crafted, ck.model, ck.train_config, f"folder:{outside}", ck.history, ck.metrics)
    at = AppTest.from_function(sidebar_only, default_timeout=TIMEOUT).run()
    at.get("file_uploader")[0].upload("crafted.safetensors", crafted.read_bytes()).run()
    assert at.session_state["model_key"].startswith("upload:") and [e.value for e in at.exception] == []
    session = {"uploaded_models": at.session_state["uploaded_models"], "model_key": at.session_state["model_key"]}
    for page in ["explore", "map", "reconstruct", "interpolate", "generate", "denoise", "evaluate"]:  # home: e2e
        at = AppTest.from_file(str(ROOT / "pages" / f"{page}.py"), default_timeout=TIMEOUT)
        for k, v in session.items():
            at.session_state[k] = v
        at.run()
        assert [e.value for e in at.exception] == [], page
        shown = " ".join(unescaped(e.value) for e in [*at.error, *at.warning, *at.info, *at.caption])
        if page not in ("explore", "reconstruct"):  # those two work without the data set
            assert "reads no folders named from the web page" in shown, page
    time.sleep(user_data_delay())  # the sidebar's delayed prefetch would have fired by now
    assert not any(n.startswith("folder:") for n in loads)


def sidebar_only() -> None:
    from ui import state

    state.model_sidebar()


def user_data_delay() -> float:
    return state.PREFETCH_DELAY_S + 0.5
