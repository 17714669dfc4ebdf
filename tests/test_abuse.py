"""What a careless or hostile user can type or upload: checkpoint names (encoded length, defaults), user text shown
as markdown (escaped everywhere), server paths in messages, and data-set loads of different users that must not
queue behind each other."""
from __future__ import annotations

import errno
import random
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from streamlit.testing.v1 import AppTest

import vae
from ui import safe, state
from ui.training_job import TrainingJob
from vae.checkpoint import checkpoint_target
from vae.checkpoint import CheckpointError, from_bytes, to_bytes
from vae.names import MAX_NAME_BYTES, dataset_stem, default_name, name_problem, safe_name

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "checkpoints" / "mnist5k-mlp-z2.safetensors"
TIMEOUT = 120
HOSTILE = "[click here](https:example.com)"  # no "/": it is a file name too


# ---------------------------------------------------------------------------------------------- names


def test_a_name_is_measured_in_utf8_bytes(tmp_path):
    cjk = "模" * 80  # 80 characters, 240 bytes: the name that used to pass and then fail with "File name too long"
    with pytest.raises(CheckpointError, match="bytes in UTF-8"):
        checkpoint_target(tmp_path, cjk)
    fits = "模" * (MAX_NAME_BYTES // 3)
    assert checkpoint_target(tmp_path, fits).path.name == f"{fits}.safetensors"


def test_the_byte_limit_is_what_the_file_system_and_the_saver_allow(tmp_path, tiny_model):
    """The longest valid name saves (temporary file included); one byte more would not have."""
    model = tiny_model()
    longest = "模" * (MAX_NAME_BYTES // 3) + "a" * (MAX_NAME_BYTES % 3)  # within 80 characters
    assert len(longest.encode()) == MAX_NAME_BYTES
    vae.save_checkpoint(checkpoint_target(tmp_path, longest).path, model, None, "digits")
    assert vae.load_checkpoint(tmp_path / f"{longest}.safetensors").dataset == "digits"
    assert "bytes in UTF-8" in name_problem(longest + "a")
    with pytest.raises(OSError) as info:  # the saver itself, given one byte more, fails on its temporary file
        vae.save_checkpoint(tmp_path / f"{longest}a.safetensors", model, None, "digits")
    assert info.value.errno == errno.ENAMETOOLONG
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{longest}.safetensors"]


@pytest.mark.parametrize("dataset, stem", [("folder:/data/my photos", "my photos"), ("folder:/data/digits.zip", "digits"),
                                           ("folder:C:\\imgs\\cats\\", "cats"), ("mnist5k", "mnist5k"),
                                           ("folder:/", "folder")])
def test_default_names_never_hold_a_path(dataset, stem):
    assert dataset_stem(dataset) == stem
    name = default_name(dataset, "mlp", 16, "1201-1810")
    assert name_problem(name) is None and "/" not in name and "\\" not in name
    assert name.startswith(safe_name(stem))


def test_safe_name_is_valid_for_any_text():
    rng = random.Random(0)
    alphabet = "ab/\\:*?\"<>|.- _\x00\n模ü🙂" + "".join(chr(c) for c in range(0x20, 0x7f))
    for _ in range(2000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 300)))
        assert name_problem(safe_name(text)) is None, repr(text)


# ---------------------------------------------------------------------------------------------- escaping


def test_md_shows_user_text_literally():
    assert safe.md(HOSTILE) == r"\[click here\]\(https\:example\.com\)"
    assert safe.md("**bold** $x$ :red[y] <b>\nnext") == r"\*\*bold\*\* \$x\$ \:red\[y\] \<b\> next"
    for ch in "[]()*_`$<>#!|~:":
        assert f"\\{ch}" in safe.md(ch)


def test_tables_escape_cells_format_numbers_and_keep_their_columns():
    from ui.widgets import table_markdown

    text = table_markdown([{"run": f"a|b {HOSTILE}", "loss": 103.456, "note": None},
                           {"run": "plain", "loss": None, "note": "x"}], formats={"loss": ".1f"})
    head, rule, first, second = text.splitlines()
    assert head == "| run | loss | note |" and rule == "|---|---:|---|"  # the numeric column is right-aligned
    assert first == rf"| a\|b {safe.md(HOSTILE)} | 103.5 | – |" and second == "| plain | – | x |"
    assert all(row.count("|") - row.count(r"\|") == 4 for row in text.splitlines())  # a "|" in a cell splits nothing


def test_error_messages_carry_no_server_path(tmp_path):
    path = ROOT / "checkpoints" / ("模" * 80 + ".safetensors")
    assert safe.error(OSError(errno.ENAMETOOLONG, "File name too long", str(path))) == "File name too long"
    text = safe.error(CheckpointError(f"cannot read {ROOT}/checkpoints/x.safetensors: Permission denied"))
    assert str(ROOT) not in text and "Permission denied" in text
    assert str(Path.home()) not in safe.error(ValueError(f"not under {Path.home()}/.cache/vae-explorer/data"))


# ---------------------------------------------------------------------------------------------- the pages


@pytest.fixture(scope="module", autouse=True)
def mnist5k_loaded(cached_mnist5k_source):
    with cached_mnist5k_source():
        state.prefetch_dataset("mnist5k").result()


@pytest.fixture
def checkpoint_dir(tmp_path, monkeypatch):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    shutil.copy(SHIPPED, folder)
    monkeypatch.setattr(state, "CHECKPOINT_DIR", folder)
    return folder


def app(page: str | None = None) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT).run()
    if page:
        at.switch_page(f"pages/{page}.py").run()
    return at


def shown_texts(at: AppTest) -> list[str]:
    """Every text Streamlit renders as markdown on the page: messages, captions, markdown, headings, widget labels."""
    out = []
    for kind in ("markdown", "caption", "error", "warning", "info", "success", "title", "header", "subheader"):
        out += [e.value for e in getattr(at, kind)]
    for kind in ("selectbox", "checkbox", "text_input", "number_input", "button", "radio", "slider"):
        out += [w.label for w in getattr(at, kind)]
    for table in at.table:  # st.table renders its cells as markdown too
        out += [str(v) for v in table.value.to_numpy().ravel()]
    return out


def assert_escaped(at: AppTest, hostile: str = HOSTILE) -> int:
    """No rendered text holds the hostile string raw; returns how many hold it escaped."""
    assert [e.value for e in at.exception] == []
    texts = shown_texts(at)
    assert [t for t in texts if hostile in t] == []
    return sum(safe.md(hostile) in t for t in texts)


def hostile_checkpoint() -> bytes:
    """The shipped z2 model, saved again with a data set whose name is markdown."""
    ck = vae.load_checkpoint(SHIPPED)
    return to_bytes(ck.model, ck.train_config, f"folder:/nowhere/{HOSTILE}", ck.history, ck.metrics)


PAGES = ["home", "train", "explore", "map", "reconstruct", "interpolate", "generate", "denoise", "evaluate"]


def hostile_app(page: str) -> AppTest:
    """The app on `page`, its current model an upload named HOSTILE whose data set's name is markdown too."""
    key = "upload:hostile"
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.session_state["uploaded_models"] = {key: state.ActiveModel(key, HOSTILE, from_bytes(hostile_checkpoint()))}
    at.session_state["model_key"] = key
    at.run()
    if page != "home":
        at.switch_page(f"pages/{page}.py").run()
    return at


def test_hostile_names_are_escaped_on_every_page(checkpoint_dir):
    shown = {}
    for page in PAGES:
        at = hostile_app(page)
        assert at.session_state["model_key"] == "upload:hostile"
        shown[page] = assert_escaped(at)
    # Every page but Train, Reconstruct (before an upload) and the map names the model or its data set; the map only says
    # that a folder outside the data root is not read, without repeating the folder's name.
    assert [p for p, n in shown.items() if n == 0] == ["train", "map", "reconstruct"]


def sidebar_only() -> None:
    """The shared sidebar on its own (AppTest drops the sidebar after the first run of a st.navigation app)."""
    from ui import state

    state.model_sidebar()


def test_hostile_file_names_in_upload_errors(checkpoint_dir):
    at = AppTest.from_function(sidebar_only, default_timeout=TIMEOUT).run()
    at.get("file_uploader")[0].upload(f"{HOSTILE}.safetensors", b"\x00" * 64, "application/octet-stream").run()
    assert assert_escaped(at, f"{HOSTILE}.safetensors") == 1
    at = app("reconstruct")
    main = [u for u in at.get("file_uploader") if u.key == "rec_upload"][0]
    main.upload(f"{HOSTILE}.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "image/png").run()
    assert assert_escaped(at, f"{HOSTILE}.png") == 1


def folder_dataset(tmp_path) -> vae.Dataset:
    """A real folder data set of 12 small images, with a path that holds '/' and ':'."""
    folder = tmp_path / "my: photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        Image.fromarray((rng.random((16, 16)) * 255).astype(np.uint8)).save(folder / f"{i}.png")
    return vae.load_dataset(f"folder:{folder}", image_size=16)


def test_a_run_on_a_folder_offers_a_valid_default_name(checkpoint_dir, tmp_path):
    data = folder_dataset(tmp_path)
    mc = vae.ModelConfig(arch="mlp", input_shape=data.shape, latent_dim=2, hidden=16)
    tc = vae.TrainConfig(dataset=data.name, epochs=1, batch_size=8, threads=1)
    job = TrainingJob(mc, tc, data).start()
    assert job.join(60)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.session_state["train_job"] = job
    at.run().switch_page("pages/train.py").run()
    assert [e.value for e in at.exception] == [] and [e.value for e in at.error] == []
    name = at.text_input(key=f"tr_name:{job.id}").value
    assert name.startswith("my- photos-mlp-z2-") and name_problem(name) is None
    at.button(key=f"tr_save:{job.id}").click().run()
    assert (checkpoint_dir / f"{name}.safetensors").exists()


def test_a_failed_save_names_no_server_path(checkpoint_dir, monkeypatch, tiny_model):
    at = app("train")
    model = tiny_model((1, 8, 8))
    data = vae.load_dataset("digits")
    job = TrainingJob(vae.ModelConfig(arch="mlp", input_shape=data.shape, latent_dim=2, hidden=16),
                      vae.TrainConfig(dataset="digits", epochs=1, threads=1), data).start()
    assert job.join(60)
    at.session_state["train_job"] = job
    at.run()

    def too_long(path, *args, **kw):
        raise OSError(errno.ENAMETOOLONG, "File name too long", str(path))

    monkeypatch.setattr(vae, "save_checkpoint", too_long)
    at.button(key=f"tr_save:{job.id}").click().run()
    errors = [e.value for e in at.error]
    assert errors == ["Could not save: File name too long"]
    assert str(checkpoint_dir) not in " ".join(shown_texts(at))
    del model


# ---------------------------------------------------------------------------------------------- the loader


def test_data_sets_load_concurrently_and_a_shared_one_loads_once(monkeypatch):
    release = threading.Event()
    calls: list[str] = []
    real = vae.load_dataset

    def load(name, **kw):
        calls.append(name)
        if name.startswith("folder:"):
            assert release.wait(30)  # another user's slow scan
            return "slow"
        return real("digits")

    monkeypatch.setattr(vae, "load_dataset", load)
    monkeypatch.setattr(state.user_data, "check_access", lambda name: None)  # as if under the server's data root
    slow = state.prefetch_dataset("folder:/test/slow-scan")
    slow_again = state.prefetch_dataset("folder:/test/slow-scan")
    other_slow = state.prefetch_dataset("folder:/test/another-scan")
    fast = state.prefetch_dataset("digits-for-concurrency-test")
    try:
        assert fast.result(timeout=20).name == "digits"  # did not wait behind the scans
        assert not slow.done() and not other_slow.done()
        assert slow_again is slow
    finally:
        release.set()
    assert slow.result(timeout=20) == "slow" and other_slow.result(timeout=20) == "slow"
    assert sorted(calls) == sorted(["folder:/test/slow-scan", "folder:/test/another-scan", "digits-for-concurrency-test"])
    with state._DATA_LOCK:
        for name in ("folder:/test/slow-scan", "folder:/test/another-scan", "digits-for-concurrency-test"):
            state._DATA.pop(name, None)


def test_a_failed_load_reports_and_is_retried(monkeypatch):
    attempts = []

    def load(name, **kw):
        attempts.append(name)
        if len(attempts) == 1:
            raise vae.DataError("not there yet")
        return "ok"

    monkeypatch.setattr(vae, "load_dataset", load)
    monkeypatch.setattr(state.user_data, "check_access", lambda name: None)  # as if under the server's data root
    first = state.prefetch_dataset("folder:/test/flaky")
    with pytest.raises(vae.DataError):
        first.result(timeout=20)
    assert state.prefetch_dataset("folder:/test/flaky").result(timeout=20) == "ok"
    with state._DATA_LOCK:
        state._DATA.pop("folder:/test/flaky", None)


# ---------------------------------------------------------------------------------------------- a run lost to a restart


@pytest.fixture
def runs_dir(tmp_path, monkeypatch):
    from ui import run_record

    monkeypatch.setattr(run_record, "RUNS_DIR", tmp_path / "runs")
    return run_record


def test_a_tab_is_told_that_a_restart_lost_its_run(checkpoint_dir, runs_dir):
    settings = {"dataset": "digits", "epochs": 7, "latent_dim": 3}
    runs_dir._write("A" * 22, {"boot": "an-earlier-server", "label": "digits-mlp-z3", "created": 0, "status": "running",
                              "settings": settings, "saved": None})
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.query_params["run"] = "A" * 22
    at.run()
    assert [e.value for e in at.exception] == []
    warning = [w.value for w in at.sidebar.warning]
    assert len(warning) == 1 and "was lost: the server restarted while it was training" in warning[0]
    assert "digits\\-mlp\\-z3" in warning[0]
    assert at.session_state["tr_last"] == settings  # the Train form gets the settings back
    assert "run" not in at.query_params


@pytest.mark.parametrize("token, record", [
    ("B" * 22, {"boot": "this", "status": "running"}),  # this very server: the session is just new, nothing was lost
    ("../../../etc/passwd", None),  # never a path
    ("C" * 22, None),  # unknown
])
def test_no_notice_without_a_lost_run(checkpoint_dir, runs_dir, token, record):
    if record is not None:
        runs_dir._write(token, {**record, "boot": runs_dir.BOOT})
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.query_params["run"] = token
    at.run()
    assert [e.value for e in at.exception] == [] and [w.value for w in at.sidebar.warning] == []


def test_a_run_keeps_its_record_up_to_date(checkpoint_dir, runs_dir):
    at = app("train")
    for key, value in {"tr_dataset": "digits", "tr_epochs": 1, "tr_hidden": 32}.items():
        (at.selectbox(key=key) if key == "tr_dataset" else at.number_input(key=key)).set_value(value)
    next(b for b in at.button if b.label == "Start training").click().run()
    job = at.session_state["train_job"]
    token = at.session_state["run_token"]
    assert at.query_params["run"] == token
    record = runs_dir.read(token)
    assert record["status"] == "running" and record["boot"] == runs_dir.BOOT and record["settings"]["epochs"] == 1
    assert job.join(60)
    at.run()
    assert runs_dir.read(token)["status"] == "finished"
    at.button(key=f"tr_save:{job.id}").click().run()
    saved = runs_dir.read(token)["saved"]
    assert saved and (checkpoint_dir / saved).exists()
    assert "saved as" in runs_dir.lost_message(runs_dir.read(token))


def test_loaded_data_sets_are_bounded_in_bytes(monkeypatch):
    from types import SimpleNamespace

    monkeypatch.setattr(vae, "load_dataset", lambda name, **kw: SimpleNamespace(
        name=name, x_train=torch.zeros(3 * 2**20 // 4), x_test=torch.zeros(2**20 // 4)))  # 4 MB each
    monkeypatch.setattr(state, "MAX_DATASET_MB", 10)
    names = [f"folder:/test/budget-{i}" for i in range(4)]
    for name in names:
        state._submit(name).result(timeout=20)  # _submit: past the data-root check, which these names would fail
    state._submit(names[-1])  # a later request applies the budget to what has finished loading
    with state._DATA_LOCK:
        kept = [n for n in names if n in state._DATA]
        assert kept == names[-2:] and state._held_mb() <= 10  # the least recently used went first
        for n in kept:
            state._DATA.pop(n)
