"""AppTest runs of the explorer's pages (home, train, explore, map, reconstruct) and the shared model sidebar.

AppTest re-runs whole scripts: fragments run inline, `run_every` never fires, Plotly charts are opaque. The training
job's thread is joined explicitly; the map's clicks are driven through its "pick by number or position" fields.
"""
from __future__ import annotations

import io
import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from streamlit.testing.v1 import AppTest

import vae
from tests.fresh import fresh_python
from ui import state
from ui.safe import md
from ui.training_job import TrainingJob

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 120  # a first run imports torch and loads mnist5k; later runs take well under a second
SHIPPED = ROOT / "checkpoints" / "mnist5k-mlp-z2.safetensors"


@pytest.fixture(scope="module", autouse=True)
def mnist5k_loaded(cached_mnist5k_source):
    """The pages share ui.state's data-set loader; load mnist5k into it once, from the suite's parsed copy."""
    with cached_mnist5k_source():
        state.prefetch_dataset("mnist5k").result()


@pytest.fixture(autouse=True)
def on_the_2d_model(monkeypatch):
    """These tests drive the pages on the 2-D model (z is short, the map is its latent space); the app's default
    itself, and that it reconstructs faithfully, is tested in tests/test_workspace.py."""
    monkeypatch.setattr(state, "DEFAULT_CHECKPOINT", SHIPPED.name)


@pytest.fixture
def checkpoint_dir(tmp_path, monkeypatch):
    """A private checkpoints/ with the shipped 2-D model, so saving never touches the real folder."""
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    shutil.copy(SHIPPED, folder)
    monkeypatch.setattr(state, "CHECKPOINT_DIR", folder)
    return folder


def run_page(name: str, **session) -> AppTest:
    at = AppTest.from_file(str(ROOT / "pages" / f"{name}.py"), default_timeout=TIMEOUT)
    for k, v in session.items():
        at.session_state[k] = v
    return at.run()


def run_app(page: str | None = None) -> AppTest:
    """The whole app (navigation and sidebar), optionally switched to a page."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT).run()
    if page:
        at.switch_page(f"pages/{page}.py").run()
    return at


def model_picker(at: AppTest):
    return next(s for s in at.selectbox if s.label == "Current model")


def assert_clean(at: AppTest) -> None:
    assert [e.value for e in at.exception] == []
    assert [e.value for e in at.error] == []


def unescaped(markdown: str) -> str:
    """A message as the user reads it: user text in messages is markdown-escaped (ui.safe.md)."""
    return re.sub(r"\\(.)", r"\1", markdown)


def html(at: AppTest) -> list[str]:
    return [h.proto.body for h in at.get("html")]


def html_with(at: AppTest, test_id: str) -> str:
    found = [b for b in html(at) if f'data-testid="{test_id}"' in b]
    assert found, f"no st.html element with data-testid={test_id}"
    return found[0]


def img_srcs(body: str) -> list[str]:
    return re.findall(r'src="(data:image/png;base64,[^"]+)"', body)


def png(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def seven() -> bytes:
    a = np.full((90, 70), 255, np.uint8)
    a[12:20, 10:60] = 0
    for r in range(20, 80):
        c = int(55 - (r - 20) * 0.4)
        a[r, c - 4: c + 4] = 0
    return png(a)


# ---------------------------------------------------------------- home


def test_home_shows_formulas_with_the_models_numbers_and_a_model_card():
    at = run_app()
    assert_clean(at)
    ck = vae.load_checkpoint(SHIPPED)
    m = ck.metrics
    latex = "\n".join(x.value for x in at.latex)
    assert r"z = \mu + \sigma \odot \epsilon" in latex
    recon, kl = round(m["recon"], 1), round(m["kl"], 1)  # the shown terms add up to the shown total
    assert f"{recon + kl:.1f} \\;=\\; {recon:.1f} \\;+\\; {kl:.1f}" in latex
    # the reparameterization, in numbers, for held-out image #0
    assert r"\epsilon &= (" in latex and r"z = \mu + \sigma \odot \epsilon &= (" in latex
    card = next(md.value for md in at.markdown if "latent dimensions" in md.value)  # a markdown table, not st.table
    assert "| latent dimensions | 2 |" in card and "| data set | mnist5k |" in card
    assert [b.label for b in at.button] == ["Draw another ε"]
    before = latex
    at.button[0].click().run()
    assert "\n".join(x.value for x in at.latex) != before  # a new eps, a new z


def test_a_starting_server_shows_the_intro_then_the_page(monkeypatch):
    """While ui.preload imports torch on a fresh server, app.py draws the torch-free intro and the navigation, with
    no model sidebar; the page itself once the preload is ready (in the browser, a fragment polls and reruns)."""
    from ui import intro, preload

    ready = [False]
    monkeypatch.setattr(preload, "warming", lambda: not ready[0])  # as on a server that has just started
    monkeypatch.setattr(preload, "ready", lambda: ready[0])
    at = run_app()
    assert_clean(at)
    assert [t.value for t in at.title] == [intro.TITLE]
    assert any("server is starting" in c.value for c in at.caption)
    assert not at.sidebar.selectbox and not at.subheader  # no model yet: no picker, no formulas, no card
    ready[0] = True
    at.run()
    assert_clean(at)
    assert not any("server is starting" in c.value for c in at.caption)
    assert "Model card" in [h.value for h in at.subheader] and at.session_state["model_key"]


def test_the_intro_and_the_navigation_import_no_torch():
    """app.py's first run on a fresh server gets as far as the intro with these modules alone; the preload is importing
    torch meanwhile, and a first run that imported it too would wait for it."""
    code = "import sys, ui.intro, ui.preload, ui.registry; print(sorted(m for m in ('torch', 'vae', 'numpy') if m in sys.modules))"
    assert fresh_python(code, timeout=120) == "[]"


def test_the_warmed_server_hides_its_startup_heap_from_the_garbage_collector():
    """After the preload (imports, the default model, its data set, the browser's decoder) the objects alive are frozen:
    Python's automatic full collections then skip them instead of walking ~260,000 objects (57-117 ms per run that
    triggered one). The model's first decode still works on the frozen heap."""
    code = """
    import gc
    from ui import preload, state
    preload.visited()
    preload.warm()
    x = state.file_model(state.CHECKPOINT_DIR / state.DEFAULT_CHECKPOINT).model.decode(__import__("torch").zeros(1, 32))
    print(preload.ready(), gc.get_freeze_count() > 100_000, tuple(x.shape))
    """
    assert fresh_python(code, timeout=300) == "True True (1, 1, 28, 28)"


# ---------------------------------------------------------------- explore


def decoded_src(at: AppTest) -> str:
    return img_srcs(html_with(at, "decoded-image"))[0]


def test_explore_decodes_z_and_its_buttons_set_it():
    at = run_page("explore")
    assert_clean(at)
    assert at.session_state["explore_z"] == [0.0, 0.0]
    zero = decoded_src(at)
    traversal = html_with(at, "traversal")
    assert len(img_srcs(traversal)) == 2  # one row per dimension
    assert at.image[0].captions == ["the decoder's view of the prior"]  # the 2-D manifold grid

    at.session_state["explore_z"] = [1.5, -1.0]  # what a slider (or the live control) writes
    at.run()
    assert_clean(at)
    moved = decoded_src(at)
    assert moved != zero and img_srcs(html_with(at, "traversal")) != img_srcs(traversal)

    at.button(key="explore_reset").click().run()
    assert at.session_state["explore_z"] == [0.0, 0.0] and decoded_src(at) == zero

    at.button(key="explore_prior").click().run()  # a local generator, draw #1
    z1, _ = vae.sample(vae.load_checkpoint(SHIPPED).model, 1, seed=1)
    assert np.allclose(at.session_state["explore_z"], z1[0].numpy(), atol=1e-6)

    at.number_input(key="explore_index").set_value(3)
    at.button(key="explore_from_data").click().run()  # its posterior mean
    mu, _ = vae.encode(vae.load_checkpoint(SHIPPED).model, state.prefetch_dataset("mnist5k").result().x_test[3:4])
    assert np.allclose(at.session_state["explore_z"], mu[0].numpy(), atol=1e-5)
    assert "held-out image #3" in at.session_state["explore_source"]
    assert_clean(at)


def test_explore_rejects_an_index_past_the_held_out_set():
    at = run_page("explore")
    at.number_input(key="explore_index").set_value(10_000)
    at.button(key="explore_from_data").click().run()
    assert "there is no held-out image #10000" in at.error[0].value
    assert at.session_state["explore_z"] == [0.0, 0.0]


def test_explore_with_16_dimensions_offers_a_chooser():
    at = run_app()
    model_picker(at).set_value(f"path:{state.CHECKPOINT_DIR / 'mnist5k-mlp-z16.safetensors'}").run()
    at.switch_page("pages/explore.py").run()
    assert_clean(at)
    chooser = at.multiselect[0]
    assert len(chooser.value) == 8 and len(at.session_state["explore_z"]) == 16
    assert all("KL" in option for option in chooser.options)
    assert len(img_srcs(html_with(at, "traversal"))) == 8
    assert len(at.image) == 0  # the manifold grid is for 2-D latents only


# ---------------------------------------------------------------- map


def test_map_pick_a_point_shows_it_its_reconstruction_and_neighbours():
    at = run_page("map")
    assert_clean(at)
    assert [r.label for r in at.radio] == ["Points", "Colour by"]
    at.number_input(key="map_index").set_value(12)
    at.button(key="map_show_point").click().run()
    assert_clean(at)
    assert at.session_state["map_pick"] == {"kind": "point", "index": 12}
    assert any(m.value.startswith("**Point #12**") for m in at.markdown)
    assert len(img_srcs(html_with(at, "map-neighbours"))) == 8
    # the neighbours are the 8 nearest latent means
    mu, _ = vae.encode(vae.load_checkpoint(SHIPPED).model, state.prefetch_dataset("mnist5k").result().x_test)
    expected = [f"#{j}" for j in vae.nearest(mu, mu[12], k=8)]
    assert re.findall(r"#\d+", html_with(at, "map-neighbours").split("</figure>")[0])[0] == expected[0]


def test_map_decode_a_position():
    at = run_page("map")
    at.number_input(key="map_x").set_value(1.0)
    at.number_input(key="map_y").set_value(-0.5)
    at.button(key="map_decode").click().run()
    assert_clean(at)
    assert any("Position (1.00, -0.50)" in m.value for m in at.markdown)
    model = vae.load_checkpoint(SHIPPED).model
    expected = vae.decode(model, torch.tensor([1.0, -0.5]))[0]
    from vae.applications import png_bytes
    import base64
    assert img_srcs(html_with(at, "map-decoded"))[0].endswith(base64.b64encode(png_bytes(expected)).decode())


@pytest.mark.parametrize("colour", ["recon", "sigma"])
def test_map_colours_and_the_whole_data_set(colour):
    at = run_page("map", map_colour=colour, map_split="all")
    assert_clean(at)
    assert any("5,000 points" in c.value for c in at.caption)


def test_map_tsne_runs_in_the_background_then_replaces_pca():
    z16 = f"path:{state.CHECKPOINT_DIR / 'mnist5k-mlp-z16.safetensors'}"
    at = run_page("map", model_key=z16, map_method="tsne")
    assert [e.value for e in at.exception] == []
    assert len(at.radio) == 3  # points, colour, projection: 16 dimensions need one
    assert at.radio[2].options == ["Auto", "PCA", "t-SNE", "UMAP"]
    from ui import projections

    if any("Computing t-SNE" in i.value for i in at.info):  # the page is drawn meanwhile (PCA), not blocked
        assert any("PCA is linear" in c.value for c in at.caption)
        job = projections.job(state.file_model(state.CHECKPOINT_DIR / "mnist5k-mlp-z16.safetensors").key, "test", "tsne")
        assert job is not None
        job.result()  # the worker process's own state: done, whatever the machine's load
        at.run()
    assert_clean(at)
    assert not any("Computing t-SNE" in i.value for i in at.info)
    # t-SNE is decodable too: the page says how (neighbours' mu) and shows the round-trip error on the data points
    assert any("t-SNE has no formula back" in c.value and "Round trip" in c.value for c in at.caption)
    at.number_input(key="map_x").set_value(0.0)
    at.number_input(key="map_y").set_value(0.0)
    at.button(key="map_decode").click().run()
    assert_clean(at)
    assert any("from the t-SNE inverse" in c.value for c in at.caption)


def test_the_map_worker_runs_below_the_server_s_cpu_priority():
    """t-SNE and UMAP are fitted in a worker process niced below the server: model switches and page opens made while
    a map is being fitted get the cores first."""
    import os

    from ui import projections

    worker = projections._pool().submit(os.nice, 0).result(timeout=300)
    assert worker == min(19, os.nice(0) + projections.WORKER_NICE) and projections.WORKER_NICE > 0


def test_map_selection_groups_and_a_direction_sent_to_explore():
    labels = state.prefetch_dataset("mnist5k").result().y_test.numpy()
    fours, nines = np.nonzero(labels == 4)[0][:30].tolist(), np.nonzero(labels == 9)[0][:30].tolist()
    at = run_app("map")
    at.session_state["map_scatter:select"] = {"ids": fours, "how": "lasso"}  # what the scatter's lasso reports
    at.run()
    assert_clean(at)
    assert any(m.value.startswith("**30 point(s)** selected by lasso; per class: 4: 30") for m in at.markdown)
    at.button(key="map_group_A").click().run()
    at.session_state["map_scatter:select"] = {"ids": nines, "how": "box"}
    at.run()
    at.button(key="map_group_B").click().run()
    assert_clean(at)
    assert at.text_input[0].value == "4 → 9"
    assert len(img_srcs(html_with(at, "map-direction"))) == 1
    at.button(key="map_direction_send").click().run()
    assert_clean(at)
    (d,) = at.session_state["explore_directions"]
    mu, _ = state.split_latents(state.file_model(SHIPPED), "test")
    assert d["name"] == "4 → 9"
    assert np.allclose(d["vector"], (mu[nines].mean(0) - mu[fours].mean(0)).numpy(), atol=1e-5)
    # On Explore the direction is a slider: moving it moves z along the direction
    z0 = np.asarray(at.session_state["explore_z"], np.float64)
    at.slider(key=f"explore_direction_{d['id']}").set_value(0.5).run()
    assert_clean(at)
    assert np.allclose(np.asarray(at.session_state["explore_z"]) - z0, 0.5 * np.asarray(d["vector"]), atol=1e-6)
    assert "moved along “4 → 9”" in at.session_state["explore_source"]


@pytest.mark.parametrize("a,b,message", [([3], [5, 6], "selection A has 1 point"), ([3, 5], [5, 3], "length zero")])
def test_map_bad_directions_get_a_message(a, b, message):
    at = run_page("map")
    at.session_state["map_groups"] = {"A": {"ids": a, "name": "x"}, "B": {"ids": b, "name": "y"}}
    at.session_state["map_scatter:select"] = {"ids": [], "how": "lasso"}  # an empty selection: a hint, no error
    at.run()
    assert_clean(at)
    assert any(message in w.value for w in at.warning)
    assert any("held no points" in c.value for c in at.caption)


def test_map_places_the_current_image():
    from ui import workspace

    x = state.prefetch_dataset("mnist5k").result().x_test[3]
    at = run_page("map", ws_current=workspace._make(x, "held-out #3", "dataset"))
    assert_clean(at)
    assert any("The current image (held-out #3) is placed by the projection, with its 2σ posterior ellipse" in c.value
               for c in at.caption)


def test_map_send_a_point_to_explore():
    at = run_app("map")
    at.number_input(key="map_index").set_value(7)
    at.button(key="map_show_point").click().run()
    at.button(key="map_send_point").click().run()
    assert_clean(at)
    mu, _ = vae.encode(vae.load_checkpoint(SHIPPED).model, state.prefetch_dataset("mnist5k").result().x_test[7:8])
    assert np.allclose(at.session_state["explore_z"], mu[0].numpy(), atol=1e-5)
    assert "map point #7" in at.session_state["explore_source"]


# ---------------------------------------------------------------- reconstruct


def test_reconstruct_an_uploaded_image():
    at = run_page("reconstruct")
    assert_clean(at)
    assert at.info[0].value.startswith("Upload an image, draw one or pick one")
    at.get("file_uploader")[0].upload("seven.png", seven(), "image/png").run()
    assert_clean(at)
    assert [m.label for m in at.metric] == ["reconstruction", "KL", "−ELBO"]
    recon, kl, neg = (float(m.value) for m in at.metric)
    assert neg == pytest.approx(recon + kl, abs=0.11)
    steps = html_with(at, "rec-steps")
    for caption in ("uploaded", "grey", "inverted (light background)", "cropped to content", "centred by mass"):
        assert caption in steps
    assert img_srcs(html_with(at, "rec-output")) and len(img_srcs(html_with(at, "rec-samples"))) == 8
    before = html_with(at, "rec-samples")
    at.button(key="rec_redraw").click().run()
    assert html_with(at, "rec-samples") != before  # new eps, new samples


def seven_as(fmt: str) -> bytes:
    im = Image.open(io.BytesIO(seven())).convert("RGB")
    buf = io.BytesIO()
    if fmt == "GIF":  # an animated GIF: the first frame is the digit, the second is blank
        im.save(buf, format="GIF", save_all=True, append_images=[Image.new("RGB", im.size, "white")], duration=100)
    else:
        im.save(buf, format=fmt)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "BMP", "WEBP", "GIF"])
def test_reconstruct_accepts_the_usual_formats(fmt):
    at = run_page("reconstruct")
    at.get("file_uploader")[0].upload(f"seven.{fmt.lower()}", seven_as(fmt), f"image/{fmt.lower()}").run()
    assert_clean(at)
    assert [m.label for m in at.metric] == ["reconstruction", "KL", "−ELBO"]


@pytest.mark.parametrize("name, data, message", [
    ("notes.png", b"just text", "not an image in an accepted format"),
    ("blank.png", png(np.full((40, 40), 255, np.uint8)), "blank"),
    ("huge.png", png(np.zeros((4100, 4100), np.uint8)), "megapixels"),
])
def test_reconstruct_bad_images_give_a_message(name, data, message):
    at = run_page("reconstruct")
    at.get("file_uploader")[0].upload(name, data, "image/png").run()
    assert [e.value for e in at.exception] == []
    assert len(at.error) == 1 and message in at.error[0].value and at.error[0].value.startswith(md(name))


def test_reconstruct_draw_mode_runs():
    at = run_page("reconstruct")
    at.segmented_control(key="rec_source").set_value("Draw").run()
    assert [e.value for e in at.exception] == []


# ---------------------------------------------------------------- train


def start_training(at: AppTest, **widgets) -> TrainingJob:
    for key, value in {"tr_dataset": "digits", "tr_epochs": 1, "tr_hidden": 64, **widgets}.items():
        w = at.selectbox(key=key) if key in ("tr_dataset", "tr_arch", "tr_likelihood") else at.number_input(key=key)
        w.set_value(value)
    next(b for b in at.button if b.label == "Start training").click().run()
    assert [e.value for e in at.exception] == []
    return at.session_state["train_job"]


def test_train_one_epoch_then_save(checkpoint_dir):
    at = run_app("train")
    assert_clean(at)
    other = run_app("train")  # another browser session, for isolation
    job = start_training(at)
    assert job.join(120)
    at.run()
    assert_clean(at)
    assert job.progress().status == "finished"
    assert at.session_state["model_key"].startswith("session:")  # the trained model is this session's current one
    assert "finished: 1 of 1 epochs" in at.get("progress")[0].proto.text
    assert other.run().session_state["model_key"] == f"path:{checkpoint_dir / SHIPPED.name}"

    at.text_input(key=f"tr_name:{job.id}").set_value("my first vae").run()
    at.button(key=f"tr_save:{job.id}").click().run()
    assert_clean(at)
    saved = checkpoint_dir / "my first vae.safetensors"
    ck = vae.load_checkpoint(saved)
    assert ck.dataset == "digits" and len(ck.history) == 1 and ck.metrics["status"] == "finished"
    for k, v in job.model.state_dict().items():
        assert torch.equal(ck.model.state_dict()[k], v)
    assert at.session_state["model_key"] == f"path:{saved}"
    assert r"Saved as my first vae\.safetensors" in at.success[0].value


def test_train_save_guards_names_and_the_shipped_files(checkpoint_dir):
    at = run_app("train")
    job = start_training(at)
    assert job.join(120)
    at.run()
    name = at.text_input(key=f"tr_name:{job.id}")
    name.set_value("../outside").run()
    assert "path separators" in at.error[0].value
    assert not [b for b in at.button if b.key == f"tr_save:{job.id}"]
    before = (checkpoint_dir / SHIPPED.name).read_bytes()
    at.text_input(key=f"tr_name:{job.id}").set_value(SHIPPED.stem).run()
    assert any("shipped with the app" in w.value for w in at.warning)
    assert at.button(key=f"tr_save:{job.id}").disabled  # until the replacement is confirmed
    at.checkbox(key=f"tr_replace:{job.id}:{SHIPPED.name}").check().run()
    at.button(key=f"tr_save:{job.id}").click().run()
    assert_clean(at)
    assert (checkpoint_dir / SHIPPED.name).read_bytes() != before
    assert vae.load_checkpoint(checkpoint_dir / SHIPPED.name).dataset == "digits"


def test_train_stop_keeps_the_weights_so_far(checkpoint_dir):
    at = run_app("train")
    job = start_training(at, tr_epochs=2000)
    while job.progress().epoch < 1:
        assert job.running
        job.join(0.05)
    at.run()  # the live panel, inline in AppTest, has the Stop button
    at.button(key="tr_stop").click().run()
    assert job.join(60)
    at.run()
    assert_clean(at)
    assert job.progress().status == "stopped" and "weights so far are kept" in at.warning[0].value
    assert at.session_state["model_key"].startswith("session:")
    assert at.button(key=f"tr_save:{job.id}")


def test_train_reports_unloadable_data_and_nan():
    at = run_page("train")
    at.selectbox(key="tr_dataset").set_value("folder…")
    at.text_input(key="tr_folder").set_value("/nonexistent/images")
    next(b for b in at.button if b.label == "Start training").click().run()
    assert [e.value for e in at.exception] == []
    assert "cannot train a model" in at.error[0].value
    assert "reads no folders named from the web page" in unescaped(at.error[0].value)
    assert "VAE_EXPLORER_DATA_ROOT" in unescaped(at.error[0].value)  # how to allow it
    assert "train_job" not in at.session_state

    # A run whose loss turned NaN: its message is shown, and the page keeps working.
    digits = state.prefetch_dataset("digits").result()
    job = TrainingJob(vae.ModelConfig(input_shape=(1, 8, 8), latent_dim=2, hidden=16),
                      vae.TrainConfig(dataset="digits", epochs=1, threads=1, device="cpu"), digits)
    job.result = vae.FitResult([], 0.1, 0, "nan", "the loss became nan at epoch 1, step 1; training stopped")
    job._progress.status, job._progress.message = "nan", job.result.message
    job._done.set()
    at = run_page("train", train_job=job)
    assert [e.value for e in at.exception] == []
    assert "the loss became nan" in at.error[0].value


# ---------------------------------------------------------------- the shared sidebar


def sidebar_only() -> None:
    """The shared sidebar on its own (AppTest drops the sidebar after the first run of a st.navigation app)."""
    from ui import state

    state.model_sidebar()


def test_sidebar_opens_an_uploaded_checkpoint_and_refuses_a_bad_one(checkpoint_dir):
    at = AppTest.from_function(sidebar_only, default_timeout=TIMEOUT).run()
    assert_clean(at)
    assert model_picker(at).options == ["mnist5k-mlp-z2 · 2-D map & manifold"]
    assert [b.label for b in at.get("download_button")] == ["Download checkpoint"]
    at.get("file_uploader")[0].upload("pickle.safetensors", pickle.dumps({"w": list(range(100))}), "application/octet-stream").run()
    assert [e.value for e in at.exception] == []
    assert "pickle.safetensors" in unescaped(at.error[0].value) and "never loaded" in at.error[0].value
    assert at.session_state["model_key"] == f"path:{checkpoint_dir / SHIPPED.name}"

    at = AppTest.from_function(sidebar_only, default_timeout=TIMEOUT).run()
    at.get("file_uploader")[0].upload("friend.safetensors", SHIPPED.read_bytes(), "application/octet-stream").run()
    assert_clean(at)
    assert at.session_state["model_key"].startswith("upload:")
    assert model_picker(at).options == ["friend · uploaded", "mnist5k-mlp-z2 · 2-D map & manifold"]
    assert model_picker(at).value == at.session_state["model_key"]


def test_pages_do_not_import_pandas_scipy_or_sklearn_into_the_server():
    """scikit-learn (~140 MB) and scipy (~40 MB) are for the worker's maps and Evaluate's probes, on demand. pandas and
    pyarrow cost the server ~76 MB that stay: st.dataframe and st.table convert through them, and
    Streamlit scans a component's dict data for data frames. The pages draw their tables as markdown
    (ui.widgets.table) and the latent control and the map's scatter send their data as a list. Run in a fresh
    interpreter, every page leaves them out; and no page or ui module calls what would bring them in."""
    import re

    calls = re.compile(r"st\.(dataframe|table|data_editor|(line|bar|area|scatter)_chart)\(|^\s*(import|from) pandas", re.M)
    found = [f"{p.relative_to(ROOT)}: {m.group(0)}" for p in [*ROOT.glob("pages/*.py"), *ROOT.glob("ui/*.py"), ROOT / "app.py"]
             for m in calls.finditer(p.read_text())]
    assert found == []
    code = """
        import sys
        from streamlit.testing.v1 import AppTest
        at = AppTest.from_file("app.py", default_timeout=180).run()
        from ui.registry import PAGES
        tables = 0
        for spec in PAGES:
            at.switch_page(spec.file).run()
            assert not at.exception, (spec.file, [e.message for e in at.exception])
            tables += sum(v.value.count("\\n|---") for v in at.markdown)
        assert tables >= 2, tables  # the home page's model card, Semi-supervised's results
        print(sorted(m for m in ("pandas", "pyarrow", "scipy", "sklearn") if m in sys.modules))
    """
    assert fresh_python(code, timeout=600) == "[]"
