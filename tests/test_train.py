"""Behavioural tier: a tiny model learns the synthetic set; runs are complete and resumable."""

from __future__ import annotations

import csv
import dataclasses
import json
from typing import Any, Literal

import keras
import numpy as np
import pytest

from fer_study import train as train_mod
from fer_study.cli import main
from fer_study.data import load_synthetic
from fer_study.errors import ConfigError, ModelError
from fer_study.evaluate import predict_probs
from fer_study.train import RunConfig, train

SIZES = {"Training": 840, "PublicTest": 210, "PrivateTest": 210}
FAST = {"model": "mini_xception", "data": "synthetic", "synthetic_sizes": SIZES, "epochs": 5,
        "batch_size": 32, "lr": 3e-3, "model_kwargs": {"l2": 1e-4}, "verbose": 0,
        "augment": {"rotation": 5.0, "erase_prob": 0.0}, "patience": 0}


@pytest.fixture(scope="module")
def learned(tmp_path_factory):
    """One small real training run, shared by the tests that inspect its outputs."""
    run_dir = tmp_path_factory.mktemp("runs") / "mini"
    cfg = RunConfig(**FAST, run_dir=str(run_dir))
    return cfg, train(cfg)


def test_tiny_model_clearly_beats_chance(learned):
    _, result = learned
    private = result.metrics["splits"]["PrivateTest"]["none"]
    assert private["accuracy"] > 0.45, private["accuracy"]  # chance is 1/7 = 0.14
    assert result.metrics["splits"]["PrivateTest"]["flip"]["accuracy"] > 0.45


def test_run_folder_is_complete(learned):
    cfg, result = learned
    run = result.run_dir
    for name in ("config.json", "history.csv", "best.keras", "last.keras", "state.json",
                 "metrics.json"):
        assert (run / name).is_file(), name
    assert json.loads((run / "config.json").read_text()) == cfg.to_json()
    rows = list(csv.DictReader(open(run / "history.csv")))
    assert [int(r["epoch"]) for r in rows] == list(range(1, cfg.epochs + 1))
    m = json.loads((run / "metrics.json").read_text())
    assert m["data"]["synthetic"] is True and "NOT FER2013" in m["data"]["dataset"]
    assert m["data"]["split_sizes"] == SIZES
    assert m["protocol"] == {"fit": "Training", "select": "PublicTest", "report": "PrivateTest",
                             "selection_metric": "accuracy (best epoch checkpoint)"}
    assert m["git"].keys() == {"commit", "dirty"} and m["environment"]["keras"]
    assert 1 <= m["best_epoch"] <= cfg.epochs
    best_val = max(float(r["val_accuracy"]) for r in rows)
    assert m["splits"]["PublicTest"]["none"]["accuracy"] == pytest.approx(best_val, abs=1e-3)


def test_predictions_stable_under_horizontal_flip(learned):
    _, result = learned
    x, y = load_synthetic(SIZES).split("PrivateTest")
    p = predict_probs(result.model, x).argmax(1)
    p_flip = predict_probs(result.model, x[:, :, ::-1]).argmax(1)
    # trained with flip augmentation: mirrored faces mostly get the same answer (unrelated
    # predictions would agree ~1/7 of the time) and are recognised about as well
    assert (p == p_flip).mean() > 0.6
    assert (p_flip == y).mean() > (p == y).mean() - 0.1
    # flip TTA makes the prediction exactly mirror-invariant
    tta = predict_probs(result.model, x, tta="flip")
    tta_flip = predict_probs(result.model, x[:, :, ::-1], tta="flip")
    np.testing.assert_allclose(tta, tta_flip, atol=1e-5)


def test_finished_run_is_not_retrained_and_config_clash_is_refused(learned):
    cfg, result = learned
    again = train(cfg)
    assert again.model is None and again.metrics == result.metrics
    clash = RunConfig(**{**cfg.to_json(), "lr": 0.1})
    with pytest.raises(ConfigError, match=r"different config \(differs in \['lr'\]\)"):
        train(clash)


def test_resume_after_interruption(tmp_path, monkeypatch):
    cfg = RunConfig(**{**FAST, "epochs": 3, "synthetic_sizes": {
        "Training": 140, "PublicTest": 70, "PrivateTest": 70}}, run_dir=str(tmp_path / "r"))
    original = train_mod._RunState.on_epoch_end

    def crash_after_two(self, epoch, logs=None):
        original(self, epoch, logs)
        if epoch == 1:
            raise KeyboardInterrupt("simulated interruption")

    monkeypatch.setattr(train_mod._RunState, "on_epoch_end", crash_after_two)
    with pytest.raises(KeyboardInterrupt):
        train(cfg)
    state = json.loads((tmp_path / "r" / "state.json").read_text())
    assert state["epoch"] == 2 and not state["completed"]
    assert not (tmp_path / "r" / "metrics.json").exists()
    last = keras.saving.load_model(tmp_path / "r" / "last.keras")
    monkeypatch.setattr(train_mod._RunState, "on_epoch_end", original)
    resumed_weights = []
    monkeypatch.setattr(train_mod.keras.saving, "load_model", _spy(resumed_weights))
    result = train(cfg)
    assert result.metrics["resumed_from_epoch"] == 2
    assert result.metrics["epochs_run"] == 3
    rows = list(csv.DictReader(open(tmp_path / "r" / "history.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    # the resumed run started from the interrupted run's last checkpoint, not from scratch
    for a, b in zip(resumed_weights[0], last.get_weights()):
        np.testing.assert_array_equal(a, b)


def _spy(store: list):
    real = keras.saving.load_model

    def load(path, *args, **kwargs):
        model = real(path, *args, **kwargs)
        if str(path).endswith("last.keras"):
            store.append(model.get_weights())
        return model

    return load


def test_cli_train_writes_run_folder_and_reports_bad_input(tmp_path, capsys):
    code = main(["train", "--model", "mini_xception", "--data", "synthetic", "--epochs", "1",
                 "--max-train-samples", "70", "--run-dir", str(tmp_path / "cli"),
                 "--set", "verbose=0", "--set", 'synthetic_sizes={"Training": 70, '
                 '"PublicTest": 35, "PrivateTest": 35}'])
    out = capsys.readouterr().out
    assert code == 0 and "SYNTHETIC demo data" in out and "PrivateTest" in out
    assert (tmp_path / "cli" / "metrics.json").is_file()
    assert main(["train", "--set", "nonsense=1", "--run-dir", str(tmp_path / "y")]) == 2
    assert "--set expects KEY=VALUE" in capsys.readouterr().err


def test_cli_missing_data_message(tmp_path, capsys):
    assert main(["train", "--data", str(tmp_path / "missing.csv"),
                 "--run-dir", str(tmp_path / "x")]) == 2
    assert "missing.csv" in capsys.readouterr().err


# --------------------------------------------------------------------------- bad input
# Each of these once failed late, with a traceback or a misleading message.

TINY_SIZES = '{"Training": 70, "PublicTest": 35, "PrivateTest": 35}'


@pytest.mark.parametrize("flag, value, message", [
    ("--batch-size", "0", "batch_size=0: must be >= 1"),  # was a ZeroDivisionError
    ("--epochs", "-3", "epochs=-3: must be >= 1"),  # was "File not found ... best.keras"
    ("--set", "tta=bogus", "tta='bogus': expected one of 'none', 'flip', 'tencrop'"),
    ("--set", "teacher_weight=1.5", "teacher_weight=1.5: must be in [0, 1]"),
])
def test_cli_rejects_bad_config_before_loading_anything(tmp_path, capsys, monkeypatch, flag,
                                                        value, message):
    def no_training(*args, **kwargs):
        raise AssertionError("training started with an invalid config")

    monkeypatch.setattr(train_mod, "train", no_training)
    run = tmp_path / "run"
    code = main(["train", "--data", "synthetic", "--set", f"synthetic_sizes={TINY_SIZES}",
                 "--run-dir", str(run), flag, value])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert not run.exists()


def test_config_validation_names_every_problem_and_checks_newer_fields():
    with pytest.raises(ConfigError) as e:
        RunConfig(lr="fast", fine_tune="some", precision="fp8", teacher_temperature=0,
                  soft_label_weight=0.6, teacher_weight=0.6, augment={"flipp": True},
                  synthetic_sizes={"Train": 10})
    msg = str(e.value)
    for part in ("lr='fast': expected float", "fine_tune='some': expected one of",
                 "precision='fp8': must be one of", "teacher_temperature=0: must be > 0",
                 "soft_label_weight + teacher_weight = 1.2: must be <= 1",
                 "augment has unknown key(s) ['flipp']", "synthetic_sizes {'Train': 10}"):
        assert part in msg, part
    cfg = RunConfig()
    cfg.epochs = 0  # set after construction: train() checks again before writing anything
    with pytest.raises(ConfigError, match="epochs=0"):
        train(cfg)


def test_bad_data_leaves_no_run_folder_to_block_the_corrected_command(tmp_path, capsys):
    bad = tmp_path / "fer2013.csv"
    bad.write_text("emotion,pixels,Usage\n9,1 2 3,Training\n")
    run = tmp_path / "run"
    assert main(["train", "--data", str(bad), "--run-dir", str(run)]) == 2
    assert "fer2013.csv" in capsys.readouterr().err
    assert not run.exists()  # so `train --data <fixed file> --run-dir run` starts cleanly


def test_cli_weights_none_means_random_initialisation(monkeypatch):
    """`--weights none` was dropped with the other unset flags, keeping pretrained weights."""
    seen = {}

    class Captured(Exception):
        pass

    def capture(cfg, **kwargs):
        seen["cfg"] = cfg
        raise Captured

    monkeypatch.setattr(train_mod, "train", capture)
    with pytest.raises(Captured):
        main(["train", "--model", "mobilenetv2", "--weights", "none", "--run-dir", "x"])
    assert seen["cfg"].weights is None
    with pytest.raises(Captured):
        main(["train", "--model", "mobilenetv2", "--run-dir", "x"])
    assert seen["cfg"].weights == "default"


def test_a_corrupt_checkpoint_is_reported_as_corrupt_not_missing(tmp_path, capsys):
    corrupt = tmp_path / "best.keras"
    corrupt.write_bytes(b"not a zip archive")
    assert main(["evaluate", str(corrupt)]) == 2
    err = capsys.readouterr().err
    assert "not a .keras model archive" in err and "File not found" not in err
    # resuming a run whose last checkpoint is damaged says so, and how to start afresh
    cfg = RunConfig(**{**FAST, "epochs": 2, "synthetic_sizes": {
        "Training": 70, "PublicTest": 35, "PrivateTest": 35}}, run_dir=str(tmp_path / "r"))
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "config.json").write_text(json.dumps(cfg.to_json()))
    (tmp_path / "r" / "state.json").write_text(json.dumps(
        {"epoch": 1, "best_val_accuracy": 0.2, "best_epoch": 1, "wait": 0, "completed": False}))
    (tmp_path / "r" / "last.keras").write_bytes(b"truncated")
    with pytest.raises(ModelError, match="last.keras is not a .keras model archive.*overwrite"):
        train(cfg)


@dataclasses.dataclass
class _Extended:
    """Fields of the kinds other branches add to RunConfig (module level: the annotations
    are strings resolved in this module's namespace)."""

    strategy: Literal["auto", "mirrored"] = "auto"
    hosts: list[str] = dataclasses.field(default_factory=list)
    workers: int = 1
    extra: Any = None


def test_validation_reads_the_annotations_of_fields_others_add():
    """A field added to RunConfig is type-checked from its annotation with no extra code."""
    from fer_study.validation import field_problems

    assert field_problems(_Extended(), {}) == ([], set())
    problems, bad = field_problems(_Extended(strategy="tpu", hosts="a,b", workers=True),
                                   {"workers": (lambda v: v >= 1, ">= 1")})
    assert bad == {"strategy", "hosts", "workers"} and len(problems) == 3


def test_saved_configs_name_repository_files_relative_to_it():
    """A run config written into a run folder, metrics.json and the results never names the
    machine's repository path (the study passes absolute paths), and a run saved that way
    still resumes under the relative form."""
    from fer_study.provenance import REPO_ROOT
    from fer_study.provenance import portable as portable_config
    from fer_study.train import RunConfig

    cfg = RunConfig(model="vgg_style", data=str(REPO_ROOT / "data" / "fer2013.csv"),
                    ferplus=str(REPO_ROOT / "data" / "fer2013new.csv"),
                    run_dir=str(REPO_ROOT / "runs" / "cpu" / "baseline_cnn"))
    saved = cfg.to_json()
    assert (saved["data"], saved["ferplus"], saved["run_dir"]) == (
        "data/fer2013.csv", "data/fer2013new.csv", "runs/cpu/baseline_cnn")
    assert cfg.data.startswith(str(REPO_ROOT))  # the object itself keeps what it was given
    assert portable_config({"data": "/elsewhere/fer2013.csv"})["data"] == "/elsewhere/fer2013.csv"
    assert portable_config({"data": "synthetic"})["data"] == "synthetic"
