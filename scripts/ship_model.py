"""Package a trained run as the shipped default model (fer_study/assets/).

    python scripts/ship_model.py RUN_DIR --data path/to/fer2013.csv [--allow-incomplete]

Copies the run's best-on-PublicTest checkpoint to ``default_model.keras``, exports it to
``default_model.tflite`` (float32; agreement with Keras checked on PublicTest), and writes
``default_model.json``: the command that reproduces the training, the config, the data
provenance, and the PublicTest / PrivateTest metrics of exactly the shipped weights (measured
here, not copied by hand). A run that has not finished can be shipped only with
``--allow-incomplete``, and the metadata then says how far it got.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from dataclasses import fields
from pathlib import Path

from fer_study.data import load_dataset
from fer_study.evaluate import metrics_from_probs, predict_probs
from fer_study.export import (
    DEFAULT_KERAS_MODEL,
    DEFAULT_TFLITE_MODEL,
    TFLiteClassifier,
    as_model_input,
    export_tflite,
)
from fer_study.labels import EMOTIONS
from fer_study.provenance import stamp, write_json
from fer_study.train import RunConfig

ASSETS = DEFAULT_KERAS_MODEL.parent
META = ASSETS / "default_model.json"


def reproduce_command(cfg: dict, data_arg: str = "data/fer2013.csv") -> str:
    """The `python -m fer_study train` command line that recreates this config."""
    default = RunConfig().to_json()
    direct = {"model": "--model", "epochs": "--epochs", "batch_size": "--batch-size",
              "lr": "--lr", "input_size": "--input-size", "seed": "--seed"}
    parts = ["python -m fer_study train", f"--data {data_arg}"]
    if cfg.get("ferplus"):
        parts.append("--ferplus data/fer2013new.csv")
    for key, flag in direct.items():
        if cfg[key] != default[key] or key == "model":
            parts.append(f"{flag} {cfg[key]}")
    skip = set(direct) | {"data", "ferplus", "run_dir", "verbose"}
    for f in fields(RunConfig):
        k = f.name
        if k not in skip and cfg[k] != default[k]:
            parts.append(f"--set '{k}={json.dumps(cfg[k])}'")
    return " ".join(parts)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir")
    p.add_argument("--data", required=True, help="the FER2013 csv the run was trained on")
    p.add_argument("--allow-incomplete", action="store_true")
    args = p.parse_args(argv)

    import keras

    run = Path(args.run_dir)
    cfg = json.loads((run / "config.json").read_text())
    state = json.loads((run / "state.json").read_text())
    if not state.get("completed") and not args.allow_incomplete:
        print(f"error: {run} has not finished (epoch {state['epoch']} of {cfg['epochs']}); "
              "pass --allow-incomplete to ship its best checkpoint so far", file=sys.stderr)
        return 2
    ds = load_dataset(args.data)
    if ds.is_synthetic:
        print("error: the shipped model must be trained on real FER2013", file=sys.stderr)
        return 2
    # compile=False: the shipped file needs no optimizer state; the in-memory model is what
    # gets evaluated, exported and saved, so a checkpoint written meanwhile cannot slip in.
    model = keras.saving.load_model(run / "best.keras", compile=False)
    metrics = {}
    for split in ("PublicTest", "PrivateTest"):
        x, y = ds.split(split)
        metrics[split] = {}
        for tta in dict.fromkeys(("none", cfg["tta"])):
            m = metrics_from_probs(predict_probs(model, x, tta=tta), y)
            metrics[split][tta] = {k: m[k] for k in ("n", "accuracy", "macro_f1", "top2_accuracy",
                                                    "ece")}
            metrics[split][tta]["per_class_recall"] = {
                c: v["recall"] for c, v in m["per_class"].items()}

    ASSETS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        x_pub, _ = ds.split("PublicTest")
        report = export_tflite(model, tmp, ["float32"], check=x_pub[:1000], name="default_model")
        entry = report["variants"]["float32"]
        shutil.copyfile(entry["path"], DEFAULT_TFLITE_MODEL)
    model.save(DEFAULT_KERAS_MODEL)
    # The shipped TFLite file is what the realtime pipeline runs: measure it, on PrivateTest,
    # with the same centre-crop input as the Keras numbers (no TTA).
    x, y = ds.split("PrivateTest")
    clf = TFLiteClassifier(DEFAULT_TFLITE_MODEL)
    size = clf.input_size
    # as_model_input centre-crops 48 px faces for smaller models, as predict_probs does
    tfl_acc = float((clf.predict(as_model_input(x, size)).argmax(1) == y).mean())

    meta = {
        "model": cfg["model"], "input_size": size,
        "labels": list(EMOTIONS),
        "params": int(model.count_params()),
        "files": {"keras": DEFAULT_KERAS_MODEL.name, "tflite": DEFAULT_TFLITE_MODEL.name,
                  "keras_bytes": DEFAULT_KERAS_MODEL.stat().st_size,
                  "tflite_bytes": DEFAULT_TFLITE_MODEL.stat().st_size},
        "training": {
            "command": reproduce_command(cfg),
            "status": "completed" if state.get("completed") else
            f"in progress: best checkpoint after {state['epoch']} of {cfg['epochs']} epochs",
            "epochs_run": state["epoch"], "best_epoch": state["best_epoch"],
            "train_seconds": round(state.get("train_seconds", 0.0), 1),
            "config": cfg,
        },
        "data": {k: v for k, v in ds.provenance().items() if k != "path"},
        "selection": "checkpoint with the best PublicTest accuracy; PrivateTest reported only",
        "metrics": metrics,
        "tflite": {"variant": "float32", "privatetest_accuracy_no_tta": tfl_acc,
                   "top1_agreement_with_keras_publictest": entry.get("top1_agreement"),
                   "latency_ms_1face_1thread": entry.get("latency_ms_1face_1thread")},
        **stamp(),
    }
    write_json(META, meta)
    pri = metrics["PrivateTest"]
    print(json.dumps({"PrivateTest": {k: round(v["accuracy"], 4) for k, v in pri.items()},
                      "tflite_privatetest": round(tfl_acc, 4), "meta": str(META)}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
