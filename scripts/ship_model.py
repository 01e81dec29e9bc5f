"""Package trained runs as the shipped default model (fer_study/assets/).

    python scripts/ship_model.py RUN_DIR [RUN_DIR ...] --data path/to/fer2013.csv [--flip]
                                 [--allow-incomplete]

One run: its best-on-PublicTest checkpoint. Several runs: a small ensemble, the mean of their
probabilities, as one model. ``--flip`` puts flip test-time augmentation inside the model
(the mean over the face and its mirror image), so the real-time pipeline gets it for the cost
of a second forward pass. Which runs, and whether to flip, should be chosen on PublicTest, as
``python -m fer_study leaderboard`` does; this script records, but never looks at,
PrivateTest for that choice.

Writes ``default_model.keras``, ``default_model.tflite`` (float32; agreement with Keras
checked on PublicTest) and ``default_model.json``: the commands that reproduce each member's
training, their configs, the data provenance, and the PublicTest / PrivateTest metrics of
exactly the shipped model (measured here, not copied by hand). A run that has not finished
can be shipped only with ``--allow-incomplete``, and the metadata then says how far it got.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from fer_study.data import load_dataset
from fer_study.evaluate import metrics_from_probs, predict_probs
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

ASSETS = DEFAULT_KERAS_MODEL.parent
META = DEFAULT_MODEL_META


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--data", required=True, help="the FER2013 csv the runs were trained on")
    p.add_argument("--flip", action="store_true", help="flip TTA inside the shipped model")
    p.add_argument("--allow-incomplete", action="store_true")
    args = p.parse_args(argv)

    import keras

    from fer_study.models import deployment_model

    ds = load_dataset(args.data)
    if ds.is_synthetic:
        print("error: the shipped model must be trained on real FER2013", file=sys.stderr)
        return 2
    members, nets = [], []
    for run in map(Path, args.run_dirs):
        cfg = json.loads((run / "config.json").read_text())
        state = json.loads((run / "state.json").read_text())
        if not state.get("completed") and not args.allow_incomplete:
            print(f"error: {run} has not finished (epoch {state['epoch']} of {cfg['epochs']}); "
                  "pass --allow-incomplete to ship its best checkpoint so far", file=sys.stderr)
            return 2
        # compile=False: the shipped file needs no optimizer state; the in-memory model is
        # what gets evaluated, exported and saved, so a checkpoint written meanwhile cannot
        # slip in.
        nets.append(keras.saving.load_model(run / "best.keras", compile=False))
        members.append({
            "run": run.name, "model": cfg["model"],
            "command": reproduce_command(cfg),
            "status": "completed" if state.get("completed") else
            f"in progress: best checkpoint after {state['epoch']} of {cfg['epochs']} epochs",
            "epochs_run": state["epoch"], "best_epoch": state["best_epoch"],
            "train_seconds": round(state.get("train_seconds", 0.0), 1),
            "config": cfg,
        })
    single = len(nets) == 1 and not args.flip
    model = nets[0] if single else deployment_model(nets, flip=args.flip)
    metrics = {}
    for split in ("PublicTest", "PrivateTest"):
        x, y = ds.split(split)
        metrics[split] = {}
        # "none" is what the pipeline runs (any --flip is inside the model); ten-crop, outside
        # the model, is reported for reference.
        for tta in ("none", "tencrop"):
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

    archs = [m["model"] for m in members]
    meta = {
        "model": archs[0] if len(archs) == 1 else "ensemble of " + " + ".join(archs),
        "tta_in_model": "flip" if args.flip else "none",
        "input_size": size,
        "labels": list(EMOTIONS),
        "params": int(model.count_params()),
        "files": {"keras": DEFAULT_KERAS_MODEL.name, "tflite": DEFAULT_TFLITE_MODEL.name,
                  "keras_bytes": DEFAULT_KERAS_MODEL.stat().st_size,
                  "tflite_bytes": DEFAULT_TFLITE_MODEL.stat().st_size},
        "members": members,
        "data": {k: v for k, v in ds.provenance().items() if k != "path"},
        "selection": "each member: its checkpoint with the best PublicTest accuracy; the "
                     "members and the flip option: chosen on PublicTest "
                     "(python -m fer_study leaderboard); PrivateTest reported only",
        "command": "python scripts/ship_model.py " + " ".join(
            [*(f"runs/{m['run']}" for m in members), "--data data/fer2013.csv"]
            + (["--flip"] if args.flip else [])),
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
