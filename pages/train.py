"""Train: settings -> a background run of vae.fit owned by this browser session -> live curves, reconstructions,
per-dimension KL and the latent map, refreshed by a polling fragment -> save under a name.

The run is a ui.training_job.TrainingJob in st.session_state["train_job"]: navigating away, clicking around or
other sessions cannot stop or change it; Stop asks it to finish the current step and keeps the weights so far.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
import time

import streamlit as st

import vae
from ui import quality, run_record, runs, safe, state, user_data
from ui.plots import curves_figure, kl_bars_figure, latent_map_figure, overlay_figure
from ui.safe import md
from ui.training_job import TrainingJob
from ui.widgets import show_image, table
from vae.checkpoint import CheckpointError, checkpoint_target
from vae.metrics import COLLAPSE_NATS, collapsed_dims
from vae.names import MAX_NAME_CHARS, default_name
from vae.semi import LabelError, SemiConfig, check_labels, classifier_for
from ui.semi_ui import M2_CLASSIFIER, M2_SETTINGS, accuracy_figure, label_budget_ui, model_kind_ui

DATASETS = ["mnist5k", "digits", "shapes", "mnist", "fashion-mnist", "kmnist", "cifar10", "folder…"]
LIKELIHOODS = {"bernoulli": "Bernoulli (BCE)", "gaussian": "Gaussian (MSE)"}
POLL_SECONDS = 0.5  # the live panel refreshes twice a second: several times per epoch at the default settings
# The defaults must show the article working within seconds: latent 16 (latent 2 gives back the wrong digit for a
# third of the held-out images), one-cycle peak lr 1e-2. Measured on mnist5k, one thread (README, "Train's defaults"):
# 8 epochs reach a reconstruction agreement of 92.7 % and a held-out -ELBO of 118 nats.
DEFAULT_SETTINGS = dict(dataset="mnist5k", folder="", arch="mlp", latent_dim=16, hidden=512, likelihood="bernoulli",
                        beta=1.0, warmup=0.0, epochs=8, batch_size=128, lr=1e-2, seed=0)


def settings_ui(running: bool, semi: bool = False) -> tuple[vae.ModelConfig, vae.TrainConfig, str] | None:
    """The settings form; on Start, validated configs and the data set's name (or a message and None).

    The last settings used stay in st.session_state["tr_last"], so the form keeps them across page changes
    (Streamlit forgets the state of widgets on pages that are not shown).
    """
    sfx = "_m2" if semi else ""  # M2's form keeps its own values (and defaults) beside the plain VAE's
    d = {**(M2_SETTINGS if semi else DEFAULT_SETTINGS), **st.session_state.get(f"tr_last{sfx}", {})}
    uploads = user_data.session_datasets()  # upload:TOKEN -> its description, this tab's only
    options = DATASETS[:-1] + list(uploads) + DATASETS[-1:]
    with st.form(f"train_settings{sfx}", border=True):
        c1, c2, c3, c4 = st.columns(4)
        v = {}
        if st.session_state.get(f"tr_dataset{sfx}") not in options:  # e.g. an upload that was removed
            st.session_state.pop(f"tr_dataset{sfx}", None)
        # The last value, unless the widget holds one (set by the upload panel): never both, Streamlit warns then.
        first = ({} if f"tr_dataset{sfx}" in st.session_state
                 else {"index": options.index(d["dataset"]) if d["dataset"] in options else 0})
        v["dataset"] = c1.selectbox("Data set", options, **first, key=f"tr_dataset{sfx}", format_func=lambda k: uploads.get(k, k),
                                    help="mnist5k, digits and shapes are built in; the torchvision ones need their files "
                                         "under ~/.cache/vae-explorer/data; upload your own images above; folder… reads "
                                         "a folder on the server, under its data root only.")
        v["folder"] = c1.text_input("Folder or .zip of images (for folder…)", d["folder"], key=f"tr_folder{sfx}",
                                    placeholder="/path/to/images",
                                    help="a path on the server, read only under the data root the server was started "
                                         "with (VAE_EXPLORER_DATA_ROOT); none by default")
        archs = list(vae.ARCHS)
        v["arch"] = c2.selectbox("Architecture", archs, index=archs.index(d["arch"]), key=f"tr_arch{sfx}",
                                 help="mlp is the article's; conv is convolutional")
        v["latent_dim"] = c2.number_input("Latent dimensions", 1, 512, d["latent_dim"], key=f"tr_latent{sfx}")
        v["hidden"] = c2.number_input("Hidden width", 8, 4096, d["hidden"], step=64, key=f"tr_hidden{sfx}")
        liks = list(LIKELIHOODS)
        v["likelihood"] = c3.selectbox("Likelihood", liks, index=liks.index(d["likelihood"]), format_func=LIKELIHOODS.get,
                                       key=f"tr_likelihood{sfx}")
        v["beta"] = c3.number_input("β (KL weight)", 0.0, 1000.0, d["beta"], step=0.5, key=f"tr_beta{sfx}",
                                    help="1 is the article's ELBO; above 1 is a β-VAE")
        v["warmup"] = c3.number_input("KL warm-up (epochs)", 0.0, 1000.0, d["warmup"], step=1.0, key=f"tr_warmup{sfx}",
                                      help="the KL weight grows linearly from 0 to β over this many epochs")
        v["epochs"] = c4.number_input("Epochs", 1, 10_000, d["epochs"], key=f"tr_epochs{sfx}")
        v["batch_size"] = c4.number_input("Batch size", 1, 65_536, d["batch_size"], key=f"tr_batch{sfx}")
        v["lr"] = c4.number_input("Learning rate", 1e-6, 1.0, d["lr"], step=1e-3, format="%.4f", key=f"tr_lr{sfx}",
                                  help="the peak of the one-cycle schedule")
        v["seed"] = c4.number_input("Seed", 0, 2**31 - 1, d["seed"], key=f"tr_seed{sfx}")
        if semi:
            v["labels"] = label_budget_ui(d.get("labels", 100), key="tr_labels")
        start = st.form_submit_button("Start training", icon=":material/play_arrow:", type="primary", disabled=running)
    if not start:
        return None
    st.session_state[f"tr_last{sfx}"] = v
    folder = v["folder"].strip()
    name = f"folder:{folder}" if v["dataset"] == "folder…" else v["dataset"]
    if v["dataset"] == "folder…" and not folder:
        st.error("Give the folder (or .zip) of images to train on.")
        return None
    try:
        data = state.dataset(name)
        mc = vae.ModelConfig(arch=v["arch"], input_shape=data.shape, latent_dim=int(v["latent_dim"]),
                             hidden=int(v["hidden"]), likelihood=v["likelihood"])
        tc = vae.TrainConfig(dataset=name, epochs=int(v["epochs"]), batch_size=int(v["batch_size"]), lr=float(v["lr"]),
                             beta=float(v["beta"]), warmup_epochs=float(v["warmup"]), seed=int(v["seed"]), threads=1)
        if semi:
            check_labels(data, v["labels"])
    except (vae.ConfigError, vae.DataError, LabelError) as exc:
        st.error(f"These settings cannot train a model: {safe.error(exc)}", icon=":material/error:")
        return None
    return mc, tc, name, (SemiConfig(labels=v["labels"], classifier=classifier_for(data.shape, M2_CLASSIFIER)) if semi else None)


def start_job(mc: vae.ModelConfig, tc: vae.TrainConfig, name: str, semi: SemiConfig | None = None) -> TrainingJob:
    label = user_data.run_label(name, mc)  # "" except for uploads: then TrainingJob names the run itself
    if label and semi is not None:
        label += f"-m2-{semi.labels or 'all'}"
    job = TrainingJob(mc, tc, state.dataset(name), label=label, semi=semi).start()
    st.session_state["train_job"] = job
    run_record.started(job.label, st.session_state.get("tr_last", {}))  # so that a server restart can be told
    return job


def live_ui(job: TrainingJob) -> None:
    """Everything that moves during training; polled while the job runs."""
    p = job.progress()
    if p.done and not job.adopted:
        # The run just ended: make the model current and redraw the whole page (sidebar, save form).
        state.adopt_finished_training()
        st.rerun()
    elapsed = f"{p.seconds:.0f} s"
    if p.done:
        text = f"{p.status}: {p.epoch} of {p.epochs} epochs in {elapsed}"
    elif p.eta is None:
        text = "starting…"
    else:
        text = f"epoch {min(p.epoch + 1, p.epochs)} of {p.epochs} · {elapsed} elapsed · about {p.eta:.0f} s left"
    c1, c2 = st.columns([5, 1], vertical_alignment="center")
    c1.progress(p.fraction, text=text)
    if not p.done:
        c2.button("Stop", icon=":material/stop:", on_click=job.stop, key="tr_stop", width="stretch",
                  help="finish the current step and keep the weights so far")
    if p.status == "nan":
        st.error(safe.error(p.message), icon=":material/warning:")
    elif p.status == "error":
        st.error(safe.error(p.message), icon=":material/error:")
    elif p.status == "stopped":
        st.warning(safe.error(p.message), icon=":material/stop_circle:")

    if p.history:
        if job.semi is not None:  # M2: the held-out accuracy beside the ELBO curves
            c_curves, c_acc = st.columns([3, 1])
            c_curves.plotly_chart(curves_figure(p.history), key="tr_curves")
            c_acc.plotly_chart(accuracy_figure(p.history), key="tr_accuracy")
        else:
            st.plotly_chart(curves_figure(p.history), key="tr_curves")
    left, right = st.columns([1, 1], gap="large")
    with left:
        if p.preview is not None:
            st.markdown(f"**Reconstructions** of fixed held-out images (top: input, bottom: after epoch {p.epoch})")
            show_image(p.preview, min(640, p.preview.shape[1] * 6), test_id="train-preview")
        if p.kl_per_dim:
            st.markdown("**KL per latent dimension** (held-out, nats)")
            st.plotly_chart(kl_bars_figure(p.kl_per_dim, COLLAPSE_NATS), key="tr_kl")
            dead = collapsed_dims(p.kl_per_dim)
            if dead and p.epoch > 0:
                names = ", ".join(f"z{d + 1}" for d in dead[:12]) + (" …" if len(dead) > 12 else "")
                st.warning(f"{len(dead)} of {len(p.kl_per_dim)} dimension(s) carry less than {COLLAPSE_NATS} nats "
                           f"of KL: collapsed, the decoder ignores them ({names}).", icon=":material/warning:")
    with right:
        if p.map_xy is not None:
            st.markdown(f"**Latent map** of {len(p.map_xy):,} held-out images"
                        + (" (PCA of the means)" if p.map_axes[0].startswith("PC") else " (the means)"))
            st.plotly_chart(latent_map_figure(p.map_xy, job.map_labels, job.classes, height=420, axis_titles=p.map_axes),
                            key="tr_map")


@st.fragment(run_every=POLL_SECONDS)
def live_polling(job: TrainingJob) -> None:
    live_ui(job)


def save_ui(job: TrainingJob) -> None:
    """Save the finished run under a name in checkpoints/ (atomic; existing files only with confirmation)."""
    ck = job.checkpoint()
    if ck is None:
        return
    st.subheader("Save this model", anchor=False)
    saved = st.session_state.get("train_saved", {}).get(job.id)
    if saved:
        st.success(f"Saved as {md(saved)}: every session can open it from the model picker.", icon=":material/check:")
    c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
    kind = job.model_config.arch + ("" if job.semi is None else f"-m2-{job.semi.labels or 'all'}")
    default = default_name(job.data.name, kind, job.model_config.latent_dim,
                           time.strftime("%m%d-%H%M", time.localtime(job.created)))
    name = c1.text_input("Name", value=default, key=f"tr_name:{job.id}", max_chars=MAX_NAME_CHARS,
                         help="letters, digits, spaces, - _ . ; saved as checkpoints/NAME.safetensors")
    try:
        target = checkpoint_target(state.CHECKPOINT_DIR, name)
    except CheckpointError as exc:
        st.error(safe.error(exc))
        return
    confirm = True
    just_saved = saved == target.path.name  # the file on disk is this run: nothing would be replaced
    if target.exists and not just_saved:
        what = "one of the models shipped with the app" if target.shipped else "an existing checkpoint"
        st.warning(f"{md(target.path.name)} is {what}; saving replaces it for every session.", icon=":material/warning:")
        confirm = st.checkbox(f"Yes, replace {md(target.path.name)}", key=f"tr_replace:{job.id}:{target.path.name}")
    if c2.button("Saved" if just_saved else "Save", icon=":material/save:", disabled=not confirm or just_saved,
                 key=f"tr_save:{job.id}", width="stretch"):
        try:
            vae.save_checkpoint(target.path, ck.model, ck.train_config, ck.dataset, ck.history, ck.metrics, semi=ck.semi)
        except (OSError, CheckpointError) as exc:
            st.error(f"Could not save: {safe.error(exc)}")
            return
        st.session_state.setdefault("train_saved", {})[job.id] = target.path.name
        # The saved file is what this session now works with; it shows in every session's picker, and the picker
        # lists it once: the run's session model gives way to the file.
        runs.mark_saved(job.id, target.path)
        run_record.update(saved=target.path.name)
        st.session_state["model_key"] = f"path:{target.path}"
        st.rerun()


def runs_ui() -> None:
    """Every run of this tab: a table, the curves of the ticked runs overlaid, and a link to compare two of them."""
    all_runs = runs.all_runs()
    if not all_runs:
        return
    st.subheader("Runs of this tab", anchor=False)
    rows = []
    for run in all_runs.values():
        m = run.metrics
        key = runs.model_key_of(run)
        active = runs.resolve(key) if key else None
        agreement = quality.agreement_text(active) if active is not None else None
        if agreement == "measuring…":
            quality.wait_ui(active)  # the table fills in when it is known
        rows.append({"run": run.title(), "latent": run.model_config["latent_dim"], "arch": run.model_config["arch"],
                     "β": run.train_config["beta"], "epochs": f"{len(run.history)}/{run.train_config['epochs']}",
                     "lr": run.train_config["lr"], "held-out −ELBO": m.get("neg_elbo"),
                     "agreement": agreement or "–", "seconds": m.get("seconds"),
                     "weights": f"saved as {Path(run.saved_as).name}" if run.saved_as else
                     ("kept" if run.model_key else "dropped (memory cap)")})
    table(rows, formats={"held-out −ELBO": ".1f", "seconds": ".1f"})
    ids = list(all_runs)
    # keyed by the newest run: a new run starts a fresh selection with the two newest ticked
    ticked = st.multiselect("Overlay the curves of", ids, default=ids[-2:], format_func=lambda i: all_runs[i].title(),
                            key=f"tr_overlay:{ids[-1]}")
    if ticked:
        st.plotly_chart(overlay_figure({all_runs[i].title(): all_runs[i].history for i in ticked}), key="tr_overlay_fig")
    with_weights = [i for i in ids if all_runs[i].has_weights]
    if len(with_weights) >= 2 and len(ticked) == 2 and all(i in with_weights for i in ticked):
        def compare() -> None:
            st.session_state["cmp_a"] = runs.model_key_of(all_runs[ticked[0]])
            st.session_state["cmp_b"] = runs.model_key_of(all_runs[ticked[1]])
            st.session_state["eval_tab"] = "Compare two models"
            st.session_state["eval_for"] = st.session_state.get("model_key")  # these picks, whatever A and B were
            for k in ("eval_a", "eval_b"):
                st.session_state.pop(k, None)

        if st.button(f"Compare {all_runs[ticked[0]].title()} (A) with {all_runs[ticked[1]].title()} (B)",
                     icon=":material/compare:", key="tr_compare", on_click=compare):
            st.switch_page("pages/evaluate.py")
    dropped = [r.title() for r in all_runs.values() if not r.has_weights]
    st.caption(f"This tab keeps every run's settings, curves and final metrics (the last {runs.MAX_RUNS} runs), and "
               f"their weights up to {runs.MAX_WEIGHT_MB} MB (now {runs.weights_mb():.1f} MB): past that, the oldest "
               "runs that are neither saved nor the current model lose their weights first"
               + (f" (dropped so far: {', '.join(dropped)})." if dropped else ".")
               + " Every run with weights is a model in the sidebar and a choice for Compare's A and B.")


st.title("Train a VAE")
st.markdown("Pick a data set and a model, press **Start**: the curves, reconstructions, per-dimension KL and the "
            "latent map update while it trains. The run belongs to this browser tab; you can keep exploring "
            "meanwhile. The defaults (latent 16, 8 epochs) train an mnist5k model whose reconstructions show the digit "
            "they were given about 93 % of the time (the *reconstruction agreement*), in seconds on an idle machine. "
            "With latent 2 the latent space is the map itself, but about a third of the digits come back as another.")
user_data.upload_panel()
job: TrainingJob | None = st.session_state.get("train_job")
semi_kind = model_kind_ui() == "m2"
request = settings_ui(running=job is not None and job.running, semi=semi_kind)
if request is not None:
    job = start_job(*request)
if job is not None:
    st.subheader(f"Run #{job.id}: {md(job.label)}", anchor=False)
    cfg = dataclasses.asdict(job.train_config)
    m2 = "" if job.semi is None else f"semi-supervised M2 with {job.semi.labels or 'all'} labels, "
    st.caption(m2 + f"{job.model_config.arch}, latent {job.model_config.latent_dim}, hidden {job.model_config.hidden}, "
               f"{job.model_config.likelihood}, β {cfg['beta']}, lr {cfg['lr']}, batch {cfg['batch_size']}, "
               f"{cfg['epochs']} epochs, seed {cfg['seed']}")
    if job.running:
        live_polling(job)
    else:
        live_ui(job)
        save_ui(job)
runs_ui()
