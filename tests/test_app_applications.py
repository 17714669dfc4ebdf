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
    assert [im.captions[0] for im in at.image] == ["input #0", "input #1", "#0 → #1, 10 steps, lerp"]
    assert {b.label for b in at.download_button} == {"Download PNG strip", "Download animated GIF"}
    at.slider(key="interp_steps").set_value(5)
    at.segmented_control(key="interp_method").set_value("slerp")
    at.number_input(key="interp_b_index").set_value(7)
    at.run()
    assert_clean(at)
    assert "slerp path from #0 to #7" in at.info[0].value and "over 4 steps" in at.info[0].value


def test_interpolate_reads_the_latent_maps_endpoints():
    at = open_page("interpolate", interp_endpoints=[3, [0.5, -0.5]])  # the default model has 2 latent dimensions
    assert_clean(at)
    assert "from #3 to map point" in at.info[0].value


@pytest.mark.parametrize("bad, reason", [([1, 2, 3], "not a pair"), ([0, 10**6], "does not exist"),
                                         ([0, [1.0, 2.0, 3.0]], "not 2 finite numbers"), ([0, "x"], "neither")])
def test_interpolate_ignores_unusable_map_endpoints(bad, reason):
    at = open_page("interpolate", interp_endpoints=bad)
    assert_clean(at)
    assert any(reason in c.value for c in at.caption)
    assert "from #0 to #1" in at.info[0].value  # fell back to held-out images


def test_interpolate_uses_an_uploaded_image_and_rejects_junk():
    at = open_page("interpolate")
    at.segmented_control(key="interp_b_source").set_value("upload").run()
    assert "Choose both endpoints" in at.info[0].value  # nothing uploaded yet: a message, no error
    at.file_uploader(key="interp_b_upload").set_value(("one.png", png(), "image/png")).run()
    assert_clean(at)
    assert "from #0 to one" in at.info[0].value
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
    assert captions[-1] == "iterations 0, 1, 2, 5"  # the strip of the hidden pixels being refilled
    assert any("painted red" in c.value for c in at.caption)


def test_denoise_salt_and_pepper_and_an_oversized_upload():
    at = open_page("denoise")
    at.segmented_control(key="denoise_kind").set_value("salt_pepper").run()
    assert_clean(at)
    at.segmented_control(key="denoise_source").set_value("upload").run()
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
    table = at.dataframe[0].value
    assert list(table["labels per class"]) == ["10"] and list(table["labelled images"]) == [100]
    assert 0.1 < table.iloc[0, 2] <= 1  # better than chance on 10 classes
    # the results are kept for the model: a fresh session sees them without pressing the buttons
    again = open_page("evaluate", eval_k=10, eval_iwae_n=100, eval_budgets=["10"])
    assert "IWAE −log p(x), k = 10" in [m.label for m in again.metric]
    assert len(again.dataframe) >= 1


def test_evaluate_compares_two_checkpoints():
    at = open_page("evaluate")
    names = [Path(p).stem for p in at.selectbox(key="eval_b").options]
    if "mnist5k-mlp-z16" not in names or "mnist5k-mlp-z16-beta4" not in names:
        pytest.skip("the shipped mnist5k z16 checkpoints are missing")
    b = next(p for p in at.selectbox(key="eval_b").options if Path(p).stem == "mnist5k-mlp-z16-beta4")
    at.selectbox(key="eval_b").set_value(b).run()
    assert_clean(at)
    claim = at.info[-1].value
    assert "β = 1.0" in claim and "β = 4.0" in claim
    table = at.dataframe[-1].value
    assert "held-out −ELBO (nats)" in list(table["metric"]) and table.shape[1] == 3
    assert at.image[-1].captions[0] == "top: input · middle: A · bottom: B"


def test_evaluate_refuses_to_compare_across_data_sets():
    at = open_page("evaluate")
    shapes = [p for p in at.selectbox(key="eval_b").options if Path(p).stem.startswith("shapes")]
    if not shapes:
        pytest.skip("no shapes checkpoint shipped")
    at.selectbox(key="eval_b").set_value(shapes[0]).run()
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
    broken = next(p for p in at.selectbox(key="eval_b").options if Path(p).stem == "mnist5k-broken")
    at.selectbox(key="eval_b").set_value(broken).run()
    assert [e.value for e in at.exception] == []
    assert any("mnist5k-broken" in unescaped(e.value) and "safetensors" in e.value for e in at.error)
