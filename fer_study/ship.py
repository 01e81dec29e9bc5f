"""Package trained runs as the shipped default model (fer_study/assets/).

    python -m fer_study ship RUN_DIR [RUN_DIR ...] --data data/fer2013.csv [--flip]
    python -m fer_study ship --from-leaderboard reports/results/best_models.json --data ...

One run: its best-on-PublicTest checkpoint. Several runs: a small ensemble, the mean of their
probabilities, as one model. ``--flip`` puts flip test-time augmentation inside the model.
Which runs, and whether to flip, are chosen on PublicTest by the leaderboard (its
``deployable`` pick, which ``--from-leaderboard`` reads); shipping records, but never looks
at, PrivateTest for that choice.

Writes ``default_model.keras``, ``default_model.tflite`` (float32; agreement with Keras
checked on PublicTest) and ``default_model.json``: the commands that reproduce each member's
training, the data provenance, the PublicTest / PrivateTest metrics of exactly the shipped
model, and its calibration: a temperature fitted on PublicTest that the real-time pipeline
applies to every probability it shows (its effect on PrivateTest ECE is recorded).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from fer_study.data import DataError, load_dataset
from fer_study.errors import ConfigError, ModelError
from fer_study.evaluate import apply_temperature, fit_temperature, metrics_from_probs, predict_probs
from fer_study.export import (
    DEFAULT_KERAS_MODEL,
    DEFAULT_MODEL_META,
    DEFAULT_TFLITE_MODEL,
    TFLiteClassifier,
    as_model_input,
    export_tflite,
)
from fer_study.labels import EMOTIONS
from fer_study.provenance import stamp, write_json
from fer_study.train import reproduce_command

SELECT, REPORT = "PublicTest", "PrivateTest"


def _check_run(run: Path, allow_incomplete: bool) -> tuple[dict, dict]:
    """A run folder's config and state, refused early when it is missing or unfinished."""
    for f in ("config.json", "state.json", "best.keras"):
        if not (run / f).is_file():
            raise ModelError(f"{run} is not a run folder (no {f})")
    cfg = json.loads((run / "config.json").read_text())
    state = json.loads((run / "state.json").read_text())
    if not state.get("completed") and not allow_incomplete:
        raise ConfigError(f"{run} has not finished (epoch {state['epoch']} of {cfg['epochs']}); "
                         "pass --allow-incomplete to ship its best checkpoint so far")
    return cfg, state


def _member(run: Path, allow_incomplete: bool) -> tuple[Any, dict]:
    from fer_study.models import as_float32, load_model

    cfg, state = _check_run(run, allow_incomplete)
    # compile=False: no optimizer state; the in-memory model is what gets evaluated, exported
    # and saved, so a checkpoint written meanwhile cannot slip in.
    net = as_float32(load_model(run / "best.keras"))
    info = {
        "run": run.name, "model": cfg["model"], "command": reproduce_command(cfg),
        "config_file": f"configs/runs/{run.name}.json",
        "status": "completed" if state.get("completed") else
        f"in progress: best checkpoint after {state['epoch']} of {cfg['epochs']} epochs",
        "epochs_run": state["epoch"], "best_epoch": state["best_epoch"],
        "train_seconds": round(state.get("train_seconds", 0.0), 1),
        "precision": state.get("precision", "float32"), "config": cfg,
    }
    return net, info


def ship(run_dirs: list[str], data: str, flip: bool = False, allow_incomplete: bool = False,
         assets: Path | None = None, command: str | None = None) -> dict:
    """Build, measure, calibrate, export and write the shipped model; returns its metadata."""
    from fer_study.models import deployment_model

    keras_file = (assets / DEFAULT_KERAS_MODEL.name) if assets else DEFAULT_KERAS_MODEL
    tflite_file = (assets / DEFAULT_TFLITE_MODEL.name) if assets else DEFAULT_TFLITE_MODEL
    meta_file = (assets / DEFAULT_MODEL_META.name) if assets else DEFAULT_MODEL_META
    if not run_dirs:
        raise ConfigError("ship needs at least one run folder")
    for r in run_dirs:
        _check_run(Path(r), allow_incomplete)
    ds = load_dataset(data)
    if ds.is_synthetic:
        raise DataError("the shipped model must be trained on real FER2013, not the "
                        "synthetic demo set")
    nets, members = zip(*(_member(Path(r), allow_incomplete) for r in run_dirs))
    single = len(nets) == 1 and not flip
    model = nets[0] if single else deployment_model(list(nets), flip=flip)
    metrics, plain = {}, {}
    for split in (SELECT, REPORT):
        x, y = ds.split(split)
        metrics[split] = {}
        # "none" is what the pipeline runs (any --flip is inside the model); ten-crop, outside
        # the model, is reported for reference.
        for tta in ("none", "tencrop"):
            probs = predict_probs(model, x, tta=tta)
            if tta == "none":
                plain[split] = probs
            m = metrics_from_probs(probs, y)
            metrics[split][tta] = {k: m[k] for k in ("n", "accuracy", "macro_f1",
                                                    "top2_accuracy", "ece")}
            metrics[split][tta]["per_class_recall"] = {
                c: v["recall"] for c, v in m["per_class"].items()}
    t = fit_temperature(plain[SELECT], ds.split(SELECT)[1])
    y_rep = ds.split(REPORT)[1]
    calibration = {
        "temperature": round(float(t), 4), "fitted_on": SELECT,
        "applies_to": "the pipeline's probabilities: softmax(log p / T)",
        f"{REPORT}_ece_before": round(metrics[REPORT]["none"]["ece"], 4),
        f"{REPORT}_ece_after": round(metrics_from_probs(
            apply_temperature(plain[REPORT], t), y_rep)["ece"], 4),
    }

    keras_file.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        x_pub, _ = ds.split(SELECT)
        report = export_tflite(model, tmp, ["float32"], check=x_pub[:1000], name="default_model")
        entry = report["variants"]["float32"]
        shutil.copyfile(entry["path"], tflite_file)
    model.save(keras_file)
    # The shipped TFLite file is what the pipeline runs: measure it on PrivateTest with the
    # same centre-crop input as the Keras numbers (no TTA).
    x, y = ds.split(REPORT)
    clf = TFLiteClassifier(tflite_file)
    tfl_acc = float((clf.predict(as_model_input(x, clf.input_size)).argmax(1) == y).mean())

    archs = [m["model"] for m in members]
    meta = {
        "model": archs[0] if len(archs) == 1 else "ensemble of " + " + ".join(archs),
        "tta_in_model": "flip" if flip else "none",
        "input_size": clf.input_size,
        "labels": list(EMOTIONS),
        "params": int(model.count_params()),
        "files": {"keras": keras_file.name, "tflite": tflite_file.name,
                  "keras_bytes": keras_file.stat().st_size,
                  "tflite_bytes": tflite_file.stat().st_size},
        "members": list(members),
        "data": {k: v for k, v in ds.provenance().items() if k != "path"},
        "selection": "each member: its checkpoint with the best PublicTest accuracy; the "
                     "members and the flip option: chosen on PublicTest "
                     "(python -m fer_study leaderboard, its deployable pick); PrivateTest "
                     "reported only",
        "command": command or "python -m fer_study ship " + " ".join(
            [*(f"runs/{m['run']}" for m in members), f"--data {data}"]
            + (["--flip"] if flip else [])),
        "metrics": metrics,
        "calibration": calibration,
        "tflite": {"variant": "float32", "privatetest_accuracy_no_tta": tfl_acc,
                   "top1_agreement_with_keras_publictest": entry.get("top1_agreement"),
                   "latency_ms_1face_1thread": entry.get("latency_ms_1face_1thread")},
        **stamp(),
    }
    write_json(meta_file, meta)
    return meta


def deployable_from_leaderboard(path: str | Path) -> tuple[list[str], bool]:
    """The run folders and flip option of a leaderboard's deployable pick."""
    board = json.loads(Path(path).read_text())
    pick = board.get("deployable")
    if not pick:
        raise ConfigError(f"{path} has no deployable pick")
    runs = board.get("runs") or {}
    return [runs.get(r, {}).get("run_dir", f"runs/{r}") for r in pick["runs"]], \
        pick["tta"] == "flip"


def add_ship_subcommand(sub) -> None:
    p = sub.add_parser("ship", help="package trained runs as the shipped real-time model")
    p.add_argument("runs", nargs="*", metavar="RUN_DIR")
    p.add_argument("--from-leaderboard", metavar="BEST_MODELS_JSON",
                   help="ship the leaderboard's deployable pick (chosen on PublicTest)")
    p.add_argument("--data", required=True, help="the FER2013 csv the runs were trained on")
    p.add_argument("--flip", action="store_true", help="flip TTA inside the shipped model")
    p.add_argument("--allow-incomplete", action="store_true")

    def run(a) -> int:
        runs, flip = list(a.runs), a.flip
        if a.from_leaderboard:
            if runs:
                raise ConfigError("give run folders or --from-leaderboard, not both")
            runs, flip = deployable_from_leaderboard(a.from_leaderboard)
            cmd = f"python -m fer_study ship --from-leaderboard {a.from_leaderboard} " \
                  f"--data {a.data}"
        else:
            cmd = None
        meta = ship(runs, a.data, flip=flip, allow_incomplete=a.allow_incomplete, command=cmd)
        pri = meta["metrics"][REPORT]
        print(json.dumps({"shipped": meta["model"], "runs": runs,
                          f"{REPORT}": {k: round(v["accuracy"], 4) for k, v in pri.items()},
                          "tflite_privatetest": round(meta["tflite"]["privatetest_accuracy_no_tta"],
                                                      4),
                          "temperature": meta["calibration"]["temperature"]}, indent=1))
        return 0

    p.set_defaults(func=run)
