"""AppTest runs of the M2 pieces: the Semi-supervised page, Explore's class selector, Train's M2 option and its
bad-input messages. The M2 checkpoint is a tiny one trained here on `digits`."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

import vae
from ui import state
from vae.config import ModelConfig
from vae.semi import SemiConfig, build_m2, train_m2

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 120


@pytest.fixture(scope="module")
def m2_file(tmp_path_factory, digits):
    """A tiny M2 on digits with 20 labels, trained for two epochs through fit()."""
    torch.manual_seed(0)
    model = build_m2(ModelConfig(input_shape=(1, 8, 8), latent_dim=4, hidden=64), 10)
    tc = vae.TrainConfig(dataset="digits", epochs=2, batch_size=64, lr=3e-3, threads=1, device="cpu")
    result, meta = train_m2(model, digits, tc, SemiConfig(labels=20))
    folder = tmp_path_factory.mktemp("m2ck")
    return vae.save_checkpoint(folder / "digits-m2-20.safetensors", model, tc, "digits", result.history,
                               result.final, semi=meta)


@pytest.fixture
def checkpoint_dir(tmp_path, monkeypatch, m2_file):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    shutil.copy(m2_file, folder)
    monkeypatch.setattr(state, "CHECKPOINT_DIR", folder)
    return folder


def run_app(page: str) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT).run()
    at.switch_page(f"pages/{page}.py").run()
    return at


def assert_clean(at: AppTest) -> None:
    assert [e.value for e in at.exception] == []
    assert [e.value for e in at.error] == []


def test_semi_page_compares_on_the_same_labels_and_draws_the_style_grid(checkpoint_dir):
    at = run_app("semi")
    assert_clean(at)
    metrics = {m.label: m.value for m in at.metric}
    assert "M2 classifier" in metrics and "pixels" in metrics
    assert float(metrics["M2 classifier"].rstrip(" %")) > 10  # better than chance after two epochs
    grid = [h.proto.body for h in at.get("html") if 'data-testid="style-grid"' in h.proto.body]
    assert grid and "y = 0, 1, 2" in grid[0]


def test_semi_page_without_an_m2_model_says_so(tmp_path, monkeypatch):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    shutil.copy(ROOT / "checkpoints" / "mnist5k-mlp-z2.safetensors", folder)
    monkeypatch.setattr(state, "CHECKPOINT_DIR", folder)
    at = run_app("semi")
    assert not at.exception
    assert any("plain VAE" in i.value for i in at.info)


def test_explore_class_selector_changes_y_and_keeps_z(checkpoint_dir):
    at = run_app("explore")
    assert_clean(at)
    picker = at.get("button_group")
    assert picker, "no class selector on Explore for an M2 model"
    z_before = list(at.session_state["explore_z"])
    key0 = at.session_state["explore_model"]
    at.session_state["m2_class"] = 7
    at.run()
    assert_clean(at)
    assert at.session_state["explore_model"] == key0 and at.session_state["explore_z"] == z_before


@pytest.mark.parametrize("budget, match", [(2000, "more than the 1500"), (5, "below one label per class")])
def test_train_m2_refuses_impossible_budgets(checkpoint_dir, monkeypatch, budget, match):
    import ui.semi_ui as semi_ui

    monkeypatch.setattr(semi_ui, "BUDGETS", [5, 10, 100, 2000, None])
    at = run_app("train")
    at.get("button_group")[0].set_value("m2").run()
    at.selectbox(key="tr_dataset_m2").set_value("digits")
    at.selectbox(key="tr_labels").set_value(budget)
    next(b for b in at.button if b.label == "Start training").click().run()
    assert any(match in e.value for e in at.error), [e.value for e in at.error]
    assert "train_job" not in at.session_state


def test_train_m2_one_epoch_shows_accuracy_and_saves_an_m2(checkpoint_dir):
    at = run_app("train")
    at.get("button_group")[0].set_value("m2").run()
    at.selectbox(key="tr_dataset_m2").set_value("digits")
    at.number_input(key="tr_epochs_m2").set_value(1)
    at.number_input(key="tr_hidden_m2").set_value(64)
    at.selectbox(key="tr_labels").set_value(100)
    next(b for b in at.button if b.label == "Start training").click().run()
    assert_clean(at)
    job = at.session_state["train_job"]
    assert job.join(timeout=300) and job.result.status == "finished", job.progress().message
    assert 0 <= job.result.history[-1]["test_accuracy"] <= 1
    at.run()
    assert_clean(at)
    ck = job.checkpoint()
    assert ck.kind == "m2" and ck.semi["labels"] == 100 and len(ck.semi["labelled"]) == 100
    at.button(key=f"tr_save:{job.id}").click().run()
    saved = list(checkpoint_dir.glob("digits-*m2-100*.safetensors"))
    assert saved and vae.load_checkpoint(saved[0]).kind == "m2"
