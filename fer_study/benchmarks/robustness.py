"""Robustness of the shipped model vs the ``fer`` package's classifier, on the same faces.

Both classifiers see the same FER2013 PrivateTest faces (a class-mix-preserving random
subset, the one notebook 06 uses for the same size and seed) under every corruption and
severity of :mod:`fer_study.robustness`. Ours runs as the real-time pipeline runs it (the
deployed TFLite file, the pipeline's crop rule); fer's runs its bundled classifier with its
own preprocessing (:class:`fer_study.baselines.FerBaseline`). The relative robustness (mean
corrupted accuracy / clean accuracy) of each is written to
``reports/results/benchmark_robustness.json`` with the command that made it, so the fer bar
quoted in notebook 06 and the report is a measurement this repository reproduces.

    python scripts/benchmark_robustness.py --data data/fer2013.csv
    python scripts/benchmark_robustness.py --data data/fer2013.csv --images 3589 --no-fer
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from fer_study import export
from fer_study import robustness as R
from fer_study.baselines import FER_CLASSIFIER, BaselineUnavailable, FerBaseline, load_fer
from fer_study.benchmarks.classifiers import tflite_face_classifier
from fer_study.benchmarks.common import command_line, display_path
from fer_study.provenance import REPO_ROOT, stamp, write_json

SCRIPT = "scripts/benchmark_robustness.py"
DEFAULT_OUT = REPO_ROOT / "reports" / "results" / f"{R.FER_ROBUSTNESS_RESULTS}.json"


def sweep(name: str, predict: Any, x: np.ndarray, y: np.ndarray, seed: int) -> dict[str, Any]:
    """Accuracy of ``predict`` (uint8 faces -> probabilities) under every corruption."""
    t0 = time.perf_counter()
    df = R.evaluate_robustness(predict, x, y, seed=seed, max_images_per_call=8000)
    table = R.robustness_summary(df)
    clean = df.attrs["clean_accuracy"]
    result = {
        "clean_accuracy": clean,
        "relative_robustness": R.relative_robustness(df),
        "by_group": {g: float(df[df["group"] == g]["accuracy"].mean() / clean)
                     for g in dict.fromkeys(df["group"])},
        "by_corruption": {c: {"mean": float(r["mean"]), "relative": float(r["relative"])}
                          for c, r in table.iterrows()},
        "seconds": round(time.perf_counter() - t0, 1),
    }
    print(f"{name}: clean {clean:.4f}, relative robustness {result['relative_robustness']:.4f} "
          f"({result['seconds']} s)")
    return result


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=f"python {SCRIPT}", description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="fer2013.csv (PrivateTest faces are used)")
    ap.add_argument("--model", type=Path, default=None,
                    help="TFLite classifier (default: the shipped default_model.tflite)")
    ap.add_argument("--images", type=int, default=1000,
                    help="PrivateTest faces in the sweep (notebook 06's cpu profile uses 1000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-fer", action="store_true", help="skip the fer comparison")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from fer_study.data import load_dataset

    model = args.model or export.DEFAULT_TFLITE_MODEL
    if not Path(model).is_file():
        raise SystemExit(f"error: model file not found: {model}")
    fer = None
    if not args.no_fer:  # before the data: a missing fer fails in a second, not minutes
        try:
            FER, notes = load_fer()
            fer = FerBaseline(FER)
        except BaselineUnavailable as exc:
            raise SystemExit(f"error: {exc}; or pass --no-fer") from exc
    ds = load_dataset(args.data)
    x, y = ds.split("PrivateTest")
    idx = R.random_subset(len(y), args.images, seed=args.seed)
    x, y = x[idx], y[idx]
    data = ds.provenance()
    if data.get("path"):
        data["path"] = display_path(data["path"])
    result: dict[str, Any] = {
        "title": "Robustness: the shipped model vs the fer package (same faces, same "
                 "corruptions)",
        "command": command_line(SCRIPT, argv),
        "split": "PrivateTest", "images": int(len(y)), "seed": args.seed, "data": data,
        "corruptions": list(R.CORRUPTIONS), "severities": list(R.SEVERITIES),
        "metric": "relative robustness = mean accuracy over corrupted conditions / clean",
        **stamp(),
    }
    meta = Path(model).with_suffix(".json")
    result["ours"] = {"model": display_path(model),
                      "description": json.loads(meta.read_text()).get("model")
                      if meta.is_file() else None,
                      **sweep("ours", tflite_face_classifier(model), x, y, args.seed)}
    if fer is not None:
        result["fer"] = {"classifier": FER_CLASSIFIER, "notes": notes,
                         **sweep("fer", fer.classify_faces, x, y, args.seed)}
        result["ours_more_robust_than_fer"] = bool(
            result["ours"]["relative_robustness"] > result["fer"]["relative_robustness"])
    result["summary_table"] = [
        {"classifier": name, "clean accuracy": r["clean_accuracy"],
         "relative robustness": r["relative_robustness"],
         **{f"{g} (relative)": v for g, v in r["by_group"].items()}}
        for name, r in (("ours: " + (result["ours"]["description"] or str(model)),
                         result["ours"]), ("fer package", result.get("fer")))
        if r is not None]
    write_json(args.out, R._finite(result))
    print(f"wrote {display_path(args.out)}")
    return 0
