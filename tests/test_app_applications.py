"""AppTest runs of the application pages (interpolate, generate, denoise, evaluate) on the shipped checkpoints."""
from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 120  # the first run loads mnist5k and torch; later runs take well under a second


def unescaped(markdown: str) -> str:
    """A message as the user reads it: user text in messages is markdown-escaped (ui.safe.md)."""
    return re.sub(r"\\(.)", r"\1", markdown)


@pytest.fixture(autouse=True)
def on_the_2d_model(monkeypatch):
    """The application pages on the 2-D model; the default model is tested in tests/test_workspace.py."""
    from ui import state

    monkeypatch.setattr(state, "DEFAULT_CHECKPOINT", "mnist5k-mlp-z2.safetensors")


def markdown_tables(at: AppTest) -> list[list[dict[str, str]]]:
    """The page's markdown tables (ui.widgets.table), each as rows of {column: cell as the user reads it}."""
    out = []
    for m in at.markdown:
        lines = [ln for ln in m.value.splitlines() if ln.startswith("|")]
        if len(lines) < 2 or not set(lines[1]) <= set("|-: "):
            continue
        split = [[unescaped(c.strip()) for c in re.split(r"(?<!\\)\|", ln)[1:-1]] for ln in lines]
        out.append([dict(zip(split[0], row)) for row in split[2:]])
    return out


def model_key(stem: str) -> str:
    """The model picker's key of a checkpoint file (what the A/B selectboxes hold)."""
    from ui import state

    return f"path:{state.CHECKPOINT_DIR / (stem + '.safetensors')}"


def open_page(name: str, **session) -> AppTest:
    at = AppTest.from_file(str(ROOT / "pages" / f"{name}.py"), default_timeout=TIMEOUT)
    for k, v in session.items():
        at.session_state[k] = v
    return at.run()


def assert_clean(at: AppTest) -> None:
    assert [e.value for e in at.exception] == []
    assert [e.value for e in at.error] == []


def png(colour: int = 0, size: tuple[int, int] = (60, 60)) -> bytes:
    """A white page with a dark vertical stroke: a '1' as a user would draw it."""
    a = np.full((size[1], size[0]), 255, np.uint8)
    a[size[1] // 5: -size[1] // 5, size[0] // 2 - 3: size[0] // 2 + 3] = colour
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


# ---------------------------------------------------------------- interpolate


def test_interpolate_shows_the_strip_and_the_claim():
    at = open_page("interpolate")
    assert_clean(at)
    assert "smooth transitions" in at.markdown[0].value
    assert "over 9 steps" in at.info[0].value
    assert [im.captions[0] for im in at.image] == ["A: #0", "B: #1", "#0 → #1, 10 steps, lerp"]
    assert {b.label for b in at.download_button} == {"Download PNG strip", "Download animated GIF"}
    at.slider(key="interp_steps").set_value(5)
    at.segmented_control(key="interp_method").set_value("slerp")
    at.number_input(key="interp_b_index").set_value(7)
    at.button(key="interp_b_use").click()
    at.run()
    assert_clean(at)
    # B is held-out #7 now; A is still the default #0 (the slot stays empty until an image is chosen)
    assert "slerp path from #0 to held-out #7 (mnist5k)" in at.info[0].value and "over 4 steps" in at.info[0].value
    assert at.session_state["ws_endpoint_b"].ref == "mnist5k:7"


def workspace_image(x, source: str, kind: str):
    from ui.workspace import _make

    return _make(x, source, kind)


def test_interpolate_starts_from_the_current_image_and_b():
    import torch

    from ui import state

    data = state.prefetch_dataset("mnist5k").result()
    at = open_page("interpolate", ws_current=workspace_image(data.x_test[3], "held-out #3 (mnist5k)", "dataset"),
                   ws_endpoint_b=workspace_image(torch.rand(1, 16, 16), "map point", "map"))
    assert_clean(at)
    assert "from held-out #3 (mnist5k) to map point" in at.info[0].value  # B at 16x16 is resized to the model's 28x28


def test_interpolate_says_when_the_current_image_cannot_be_used():
    import torch

    at = open_page("interpolate", ws_current=workspace_image(torch.ones(3, 50, 50), "upload paper.png", "upload"))
    assert [e.value for e in at.exception] == []
    assert "cannot be made into this model's input" in at.info[0].value  # blank paper: no strokes to centre


def test_interpolate_uses_an_uploaded_image_and_rejects_junk():
    at = open_page("interpolate")
    at.file_uploader(key="interp_b_upload").set_value(("one.png", png(), "image/png")).run()
    assert_clean(at)
    assert "from #0 to one.png" in at.info[0].value
    assert "upload one.png" in at.session_state["ws_endpoint_b"].source
    at.file_uploader(key="interp_b_upload").set_value(("junk.png", b"not an image at all", "image/png")).run()
    assert [e.value for e in at.exception] == []
    assert any("junk.png" in unescaped(e.value) and "not an image" in e.value for e in at.error)


# ---------------------------------------------------------------- generate


def test_generate_shows_samples_and_their_neighbours():
    at = open_page("generate")
    assert_clean(at)
    assert "blurry" in at.markdown[0].value
    claim = at.info[0].value
    assert "16 samples" in claim and "nearest training image" in claim
    assert len(at.image) == 2 and at.download_button[0].label == "Download PNG"
    at.select_slider(key="gen_n").set_value(4)
    at.slider(key="gen_temperature").set_value(0.5)
    at.number_input(key="gen_seed").set_value(42)
    at.run()
    assert_clean(at)
    assert "4 samples" in at.info[0].value
    assert "T = 0.50, seed 42" in at.image[0].captions[0]


# ---------------------------------------------------------------- denoise


def test_denoise_gaussian_noise_shows_three_images():
    at = open_page("denoise")
    assert_clean(at)
    assert "denoising and completion" in at.markdown[0].value
    assert "one pass through the VAE" in at.info[0].value and "for the reconstruction" in at.info[0].value
    captions = [im.captions[0] for im in at.image]
    assert len(captions) == 3 and captions[0].startswith("corrupted · MSE") and captions[2] == "original #0"


@pytest.mark.parametrize("kind", ["box", "half", "pixels"])
def test_denoise_masks_complete_iteratively(kind):
    at = open_page("denoise")
    at.segmented_control(key="denoise_kind").set_value(kind).run()
    at.slider(key="denoise_iterations").set_value(5).run()
    assert_clean(at)
    assert "After 5 completion iterations" in at.info[0].value
    captions = [im.captions[0] for im in at.image]
    assert any(c.startswith("completed (5 it.)") for c in captions)
    # the strip of the hidden pixels being refilled, with the best iteration marked
    assert captions[-1].startswith("iterations 0, 1, 2") and captions[-1].count("(best)") == 1
    assert any("painted red" in c.value for c in at.caption)


def test_denoise_salt_and_pepper_and_an_oversized_upload():
    at = open_page("denoise")
    at.segmented_control(key="denoise_kind").set_value("salt_pepper").run()
    assert_clean(at)
    at.file_uploader(key="denoise_upload").set_value(("huge.png", png(size=(5000, 4000)), "image/png")).run()
    assert [e.value for e in at.exception] == []
    assert any("megapixels" in e.value for e in at.error)


# ---------------------------------------------------------------- evaluate


def test_evaluate_summary_iwae_and_probes():
    at = open_page("evaluate")
    assert_clean(at)
    assert "reconstruction" in at.info[0].value and "active" in at.info[0].value
    assert [m.label for m in at.metric[:4]] == ["held-out −ELBO", "reconstruction", "KL", "active units"]
    assert any("shapes" in c.value for c in at.caption)  # MIG needs a shapes model
    at.select_slider(key="eval_k").set_value(10)
    at.select_slider(key="eval_iwae_n").set_value(100)
    at.button(key="eval_iwae_run").click().run()
    assert_clean(at)
    labels = [m.label for m in at.metric]
    assert "IWAE −log p(x), k = 10" in labels and "gap" in labels
    at.pills(key="eval_budgets").set_value(["10"])
    at.button(key="eval_probe_run").click().run()
    assert_clean(at)
    (row,) = next(t for t in markdown_tables(at) if "labelled images" in t[0])
    assert row["labels per class"] == "10" and row["labelled images"] == "100"
    latent = next(v for k, v in row.items() if k.startswith("accuracy on") and "latent" in k)
    assert 10 < float(latent.rstrip("%")) <= 100  # better than chance on 10 classes
    # the results are kept for the model: a fresh session sees them without pressing the buttons
    again = open_page("evaluate", eval_k=10, eval_iwae_n=100, eval_budgets=["10"])
    assert "IWAE −log p(x), k = 10" in [m.label for m in again.metric]
    assert any("labelled images" in t[0] for t in markdown_tables(again))


def test_evaluate_compares_two_checkpoints():
    at = open_page("evaluate")
    at.selectbox(key="eval_a").set_value(model_key("mnist5k-mlp-z16")).run()
    at.selectbox(key="eval_b").set_value(model_key("mnist5k-mlp-z16-beta4")).run()
    assert_clean(at)
    claim = at.info[-1].value
    assert "β = 1.0" in claim and "β = 4.0" in claim
    table = markdown_tables(at)[-1]
    assert "held-out −ELBO (nats)" in [r["metric"] for r in table] and len(table[0]) == 3
    elbo = next(r for r in table if r["metric"] == "held-out −ELBO (nats)")
    assert all(float(v) > 0 for k, v in elbo.items() if k != "metric")  # two numbers, one per model
    assert at.image[-1].captions[0] == "top: input · middle: A · bottom: B"


def test_compare_opens_on_a_model_of_the_same_data_set():
    """B defaults to a model of A's data set (the newest file is shapes-mlp-z6: a B from it would open on a warning)."""
    at = open_page("evaluate")
    assert_clean(at)
    assert at.selectbox(key="eval_b").value.startswith(f"path:{ROOT / 'checkpoints' / 'mnist5k-'}")
    assert at.warning == [] or all("trained on" not in w.value for w in at.warning)
    assert "held-out −ELBO (nats)" in [r["metric"] for r in markdown_tables(at)[-1]]


def test_compare_follows_a_model_switched_after_a_first_visit():
    at = open_page("evaluate")
    assert at.selectbox(key="eval_a").value == at.session_state["model_key"]
    at.selectbox(key="eval_b").set_value(model_key("mnist5k-mlp-z2")).run()
    at.session_state["model_key"] = model_key("mnist5k-mlp-z16")  # the sidebar switches the model
    at.run()
    assert_clean(at)
    assert at.selectbox(key="eval_a").value == model_key("mnist5k-mlp-z16")
    assert at.selectbox(key="eval_b").value == model_key("mnist5k-mlp-z16-beta4")  # A's sibling, not the old pick


def test_evaluate_refuses_to_compare_across_data_sets():
    at = open_page("evaluate")
    at.selectbox(key="eval_b").set_value(model_key("shapes-mlp-z6")).run()
    assert [e.value for e in at.exception] == []
    assert any("same data set" in w.value for w in at.warning)


def test_evaluate_compare_reports_a_broken_checkpoint(tmp_path, monkeypatch):
    import shutil

    from ui import state

    folder = tmp_path / "checkpoints"
    folder.mkdir()
    shutil.copy(ROOT / "checkpoints" / "mnist5k-mlp-z2.safetensors", folder)
    (folder / "mnist5k-broken.safetensors").write_bytes(b"\x80\x04not a checkpoint at all")
    monkeypatch.setattr(state, "CHECKPOINT_DIR", folder)
    at = open_page("evaluate")
    at.selectbox(key="eval_b").set_value(model_key("mnist5k-broken")).run()
    assert [e.value for e in at.exception] == []
    assert any("mnist5k-broken" in unescaped(e.value) and "safetensors" in e.value for e in at.error)
