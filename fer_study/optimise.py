"""The optimisation table of a Keras classifier (notebook 06, for the shipped model): its
TFLite exports (float32, dynamic-range, int8) and magnitude-pruned, fine-tuned variants
(:mod:`fer_study.prune`), every one exported and measured the same way.

Per variant: file size and gzip-compressed size (the flatbuffer keeps every float of a pruned
kernel; its zeros only shrink a compressed download), median single-face latency on one thread
(a pruned kernel is still dense, so expect no speed-up), accuracy on each evaluation split, and
top-1 agreement and mean |p - p_keras| with the float32 Keras model on the first split (the
report split).
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fer_study.errors import ConfigError
from fer_study.export import (  # _quiet_tf_logs: as export's own Keras-vs-TFLite table
    VARIANTS,
    _quiet_tf_logs,
    export_tflite,
    load_keras_model,
)
from fer_study.model_input import as_model_input, model_input_size
from fer_study.prune import check_sparsity, prune_model
from fer_study.tflite import TFLiteClassifier
from fer_study.timing import keras_latency

__all__ = ["file_sizes", "optimisation_table"]


def file_sizes(path: str | os.PathLike) -> dict[str, float]:
    """A file's size and its gzip (level 9) size, in KB."""
    raw = Path(path).read_bytes()
    return {"size_kb": len(raw) / 1024, "gzip_kb": len(gzip.compress(raw, 9)) / 1024}


def _scores(probs: Mapping[str, np.ndarray], labels: Mapping[str, np.ndarray],
            ref: np.ndarray) -> dict[str, float]:
    """Accuracy per split; agreement and mean |p - p_ref| with `ref` on the first split."""
    first = next(iter(labels))
    out = {f"accuracy {s}": float(np.mean(p.argmax(1) == labels[s])) for s, p in probs.items()}
    out["agreement"] = float(np.mean(probs[first].argmax(1) == ref.argmax(1)))
    out["mean_abs_prob_diff"] = float(np.abs(probs[first] - ref).mean())
    return out


def optimisation_table(model_file: str | os.PathLike, out_dir: str | os.PathLike,
                       splits: Mapping[str, tuple[np.ndarray, np.ndarray]],
                       representative: np.ndarray | None = None,
                       train: tuple[np.ndarray, np.ndarray] | None = None,
                       variants: Sequence[str] = VARIANTS,
                       sparsities: Sequence[float] = (0.0, 0.5, 0.75, 0.9), epochs: int = 1,
                       batch_size: int = 64, learning_rate: float = 1e-3, seed: int = 0,
                       latency_calls: int = 50, progress: bool = True):
    """Size, latency and accuracy of `model_file` as Keras, as TFLite `variants` and pruned to
    each of `sparsities` (fine-tuned `epochs` on `train` faces, exported float32).

    `splits`: {name: (uint8 faces, labels)}, the report split first (agreement is measured
    there). `representative`: Training faces calibrating int8. Returns a DataFrame, one row
    per variant; ``attrs["pruning"]`` holds each pruning's summary
    (:meth:`fer_study.prune.PruneResult.summary`). Files go to `out_dir`.
    """
    import pandas as pd
    from tqdm import tqdm  # tqdm.auto warns in notebooks without ipywidgets

    if not splits:
        raise ConfigError("optimisation_table needs at least one evaluation split")
    sparsities = [check_sparsity(s) for s in sparsities]
    if sparsities and train is None:
        raise ConfigError("pruned variants need Training faces to fine-tune on (train=...)")
    model_file, out = Path(model_file), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = load_keras_model(model_file)
    size = model_input_size(model)
    inputs = {s: as_model_input(x, size) for s, (x, _) in splits.items()}
    labels = {s: np.asarray(y) for s, (_, y) in splits.items()}
    keras_probs = {s: model.predict(x, batch_size=256, verbose=0) for s, x in inputs.items()}
    ref = keras_probs[next(iter(splits))]

    def tflite_row(variant: str, entry: Mapping[str, Any], **extra: Any) -> dict:
        clf = TFLiteClassifier(entry["path"], num_threads=1)
        probs = {s: clf.predict(x) for s, x in inputs.items()}
        return {"variant": variant, **extra, **file_sizes(entry["path"]),
                "latency_ms": entry["latency_ms_1face_1thread"],
                **_scores(probs, labels, ref), "file": entry["path"]}

    rows = [{"variant": "keras float32", "sparsity": 0.0, **file_sizes(model_file),
             "latency_ms": keras_latency(model, calls=latency_calls)["median_ms"],
             **_scores(keras_probs, labels, ref), "file": str(model_file)}]
    pruning = []
    # quiet: "Assets written to ..." per export, retracing notes of each fresh pruned model
    with _quiet_tf_logs():
        for step in tqdm(["exports", *sparsities], desc="optimising", unit="variant",
                         disable=not progress):
            if step == "exports":
                report = export_tflite(model, out, list(variants),
                                       representative=representative, name=model_file.stem)
                rows += [tflite_row(f"tflite {v}", e, sparsity=0.0)
                         for v, e in report["variants"].items()]
                continue
            res = prune_model(model, step, *train, epochs=epochs, batch_size=batch_size,
                              learning_rate=learning_rate, check=next(iter(splits.values())),
                              seed=seed)
            name = f"{model_file.stem}_pruned{round(step * 100)}"
            entry = export_tflite(res.model, out, ["float32"], name=name)["variants"]["float32"]
            pruning.append(res.summary())
            # 0%: the fine-tuning alone, the control that separates its effect from pruning's
            label = ("fine-tune only (0% pruned, control)" if step == 0
                     else f"pruned {step:.0%} + fine-tune")
            rows.append(tflite_row(f"{label}, tflite float32", entry,
                                   sparsity=step, achieved_sparsity=res.achieved,
                                   accuracy_before_fine_tune=res.check_accuracy_before,
                                   fine_tune_images=res.fine_tune_images,
                                   fine_tune_s=res.seconds))
    df = pd.DataFrame(rows)
    df.attrs["pruning"] = pruning
    return df
