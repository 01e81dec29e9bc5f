"""Export a Keras classifier to TensorFlow Lite, and check the exports against it.

Three variants are written, ``<name>_<variant>.tflite``:

* ``float32``: plain conversion, numerically ~identical to Keras.
* ``dynamic``: dynamic-range quantisation (int8 weights, float activations); needs no data.
* ``int8``: full-integer quantisation of weights *and* activations, calibrated on a
  representative set of face images.  Its input and output stay **float32**: the
  (de)quantise ops live inside the graph, so every variant has the same runtime contract
  (float pixels in [0, 255] in, softmax probabilities out) and callers never handle scales
  or zero points.  The cost is two cheap elementwise ops per call.

Conversion uses ``tf.lite.TFLiteConverter.from_keras_model``, which works with Keras 3 on
TF 2.21 (it exports a SavedModel internally).  The concrete-function route also converts but
keeps resource variables, which breaks int8 calibration, so it is not used.

TFLite models run through :class:`fer_study.tflite.TFLiteClassifier` (LiteRT, no TensorFlow
import). :func:`tflite_benchmark` compares every variant with the Keras model it came from.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

# ASSETS_DIR and DEFAULT_MODEL_META are re-exported for fer_study.ship.
from fer_study.assets import (  # noqa: F401
    ASSETS_DIR,
    DEFAULT_KERAS_MODEL,
    DEFAULT_MODEL_META,
    DEFAULT_TFLITE_MODEL,
)
from fer_study.errors import ExportError, ModelError
from fer_study.labels import EMOTIONS
from fer_study.model_input import as_model_input, model_input_size
from fer_study.tflite import TFLiteClassifier, quiet_tf
from fer_study.timing import keras_latency, time_calls

VARIANTS: tuple[str, ...] = ("float32", "dynamic", "int8")
REPORT_NAME = "export_report.json"


def default_model_path(kind: str = "tflite") -> Path:
    """Path of the shipped default model (``kind`` is ``"tflite"`` or ``"keras"``).

    Raises ExportError with a clear message when the file is not there.
    """
    path = DEFAULT_TFLITE_MODEL if kind == "tflite" else DEFAULT_KERAS_MODEL
    if not path.is_file():
        raise ExportError(
            f"the default model {path} is missing: train and export one "
            f"(see the project README) or pass --model PATH to a .keras or .tflite file"
        )
    return path


def load_keras_model(path: str | os.PathLike[str]) -> Any:
    """Load a ``.keras`` classifier for inference (:func:`fer_study.models.load_model`),
    reporting a bad file as an ExportError (what the exporter and its callers handle)."""
    quiet_tf()
    from fer_study.models import load_model

    try:
        return load_model(path)
    except ModelError as exc:
        raise ExportError(str(exc)) from exc


# --------------------------------------------------------------------------- conversion


def _saved_model(model: Any, directory: Path) -> str:
    """Export ``model`` once as a SavedModel that every variant converts from.

    ``TFLiteConverter.from_keras_model`` writes a temporary SavedModel on every call, which
    is most of a conversion's cost (~20 s for EfficientNet-Lite0 on one core); one export
    shared by the float32, dynamic and int8 conversions does that work once.
    """
    import keras
    import tensorflow as tf

    path = str(directory / "saved_model")
    # An explicit inference endpoint: `model.export` traces `model.__call__` without
    # `training`, which can keep Dropout's random ops in the graph (TFLite has no kernels for
    # them). The signature keeps the model's own input shape, batch dimension included, as
    # from_keras_model did (TFLiteClassifier pads chunks for fixed-batch models).
    spec = [tf.TensorSpec(tuple(t.shape), t.dtype, name=t.name) for t in model.inputs]
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serve", lambda x: model(x, training=False), input_signature=spec)
    with contextlib.redirect_stdout(io.StringIO()):  # "Saved artifact at ..."
        archive.write_out(path, verbose=False)
    return path


def _convert(saved_model: str, variant: str, representative: np.ndarray | None) -> bytes:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model)
    if variant in ("dynamic", "int8"):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if variant == "int8":
        assert representative is not None

        def gen():  # the calibrator wants one sample per step
            for img in representative:
                yield [img[None]]

        converter.representative_dataset = gen
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        # inference_input_type / output_type stay float32 on purpose (see module doc).
    # The int8 path warns about missing input statistics, which float inputs do not need.
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
        return converter.convert()


def _keras_probs(model: Any, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    outs = [
        np.asarray(model(x[i : i + batch_size], training=False))
        for i in range(0, len(x), batch_size)
    ]
    return np.concatenate(outs).astype(np.float32)


def _latency_ms(clf: TFLiteClassifier, x: np.ndarray, runs: int = 50) -> float:
    """Median single-face latency of a TFLite classifier, in ms."""
    one = x[:1]
    return time_calls(lambda: clf.predict(one), calls=runs, warmup=5)["median_ms"]


def export_tflite(
    model_path_or_model: str | os.PathLike[str] | Any,
    out_dir: str | os.PathLike[str],
    variants: Sequence[str] = VARIANTS,
    representative: np.ndarray | None = None,
    check: np.ndarray | None = None,
    name: str | None = None,
    max_representative: int = 500,
) -> dict[str, Any]:
    """Convert a Keras classifier to TFLite variants and report their agreement.

    Args:
        model_path_or_model: a ``.keras`` file or an in-memory Keras model.
        out_dir: where ``<name>_<variant>.tflite`` and ``export_report.json`` go.
        variants: any of ``"float32"``, ``"dynamic"``, ``"int8"``.
        representative: face images (N, H, W[, 1]) in [0, 255] used to calibrate int8
            (required for int8; at most ``max_representative`` are used).
        check: face images compared between Keras and each TFLite file; adds
            ``top1_agreement``, ``max_abs_prob_diff`` and ``mean_abs_prob_diff``.
        name: file stem; defaults to the model file's stem or the model's name.

    Returns:
        The report: per variant its path, size in bytes, 1-thread single-face latency and,
        with ``check``, the agreement figures.  Also written to ``export_report.json``.
    """
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        raise ExportError(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
    if (
        isinstance(model_path_or_model, (str, os.PathLike))
        and not Path(model_path_or_model).is_file()
    ):
        raise ExportError(f"model file not found: {model_path_or_model}")
    if "int8" in variants and (representative is None or len(representative) == 0):
        raise ExportError("the int8 variant needs representative face images to calibrate")
    quiet_tf()
    if isinstance(model_path_or_model, (str, os.PathLike)):
        source = str(model_path_or_model)
        model = load_keras_model(model_path_or_model)
        name = name or Path(model_path_or_model).stem
    else:
        model = model_path_or_model
        source = "<in-memory model>"
        name = name or getattr(model, "name", None) or "model"
    # A run trained under mixed_bfloat16 keeps bf16 layer policies; the converter cannot
    # lower bf16 convolutions, and deployment wants float32 anyway.
    from fer_study.models import as_float32

    model = as_float32(model)
    size = model_input_size(model)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    rep = None
    if representative is not None and len(representative):
        rng = np.random.default_rng(0)  # reproducible calibration subset
        idx = np.sort(rng.permutation(len(representative))[:max_representative])
        rep = as_model_input(np.asarray(representative)[idx], size)
    x_check = as_model_input(check, size) if check is not None and len(check) else None
    ref = _keras_probs(model, x_check) if x_check is not None else None

    report: dict[str, Any] = {
        "source": source,
        "input_size": size,
        "classes": list(EMOTIONS),
        "io": "float32 input pixels in [0, 255], float32 probabilities out (all variants)",
        "representative_images": 0 if rep is None else len(rep),
        "check_images": 0 if x_check is None else len(x_check),
        "variants": {},
    }
    with tempfile.TemporaryDirectory(prefix="fer_study_export_") as tmp:
        t0 = time.perf_counter()
        try:
            saved = _saved_model(model, Path(tmp))
        except Exception as exc:
            raise ExportError(f"SavedModel export for TFLite conversion failed: {exc}") from exc
        report["saved_model_export_s"] = round(time.perf_counter() - t0, 2)
        for variant in variants:
            t0 = time.perf_counter()
            try:
                flat = _convert(saved, variant, rep)
            except Exception as exc:  # converter errors are many and opaque
                raise ExportError(f"TFLite conversion ({variant}) failed: {exc}") from exc
            path = out / f"{name}_{variant}.tflite"
            path.write_bytes(flat)
            entry: dict[str, Any] = {
                "path": str(path),
                "size_bytes": len(flat),
                "convert_s": round(time.perf_counter() - t0, 2),
            }
            clf = TFLiteClassifier(path, num_threads=1)
            probe = x_check if x_check is not None else np.zeros((1, size, size, 1), np.float32)
            entry["latency_ms_1face_1thread"] = round(_latency_ms(clf, probe), 4)
            if x_check is not None and ref is not None:
                got = clf.predict(x_check)
                diff = np.abs(got - ref)
                entry["top1_agreement"] = float(np.mean(got.argmax(1) == ref.argmax(1)))
                entry["max_abs_prob_diff"] = float(diff.max())
                entry["mean_abs_prob_diff"] = float(diff.mean())
            report["variants"][variant] = entry
    (out / REPORT_NAME).write_text(json.dumps(report, indent=2) + "\n")
    return report


@contextlib.contextmanager
def _quiet_tf_logs():
    """Silence TensorFlow's Python INFO logs ("Assets written to ...") during conversion."""
    import tensorflow as tf

    logger = tf.get_logger()
    level = logger.level
    logger.setLevel("ERROR")
    try:
        yield
    finally:
        logger.setLevel(level)


def tflite_benchmark(model_file: str | Path, out_dir: str | Path, images: np.ndarray,
                     labels: np.ndarray, representative: np.ndarray,
                     variants: Sequence[str] = VARIANTS, keras_latency_ms: bool = True):
    """Export `model_file` to TFLite and compare every variant with the Keras model.

    Returns a DataFrame (one row for Keras, one per variant): file size, accuracy on
    (`images`, `labels`), top-1 agreement and mean |p - p_keras| with Keras on the same
    faces, and median single-face latency on 1 thread (Keras through a compiled
    ``tf.function``, as a deployment would run it). The export report is in
    ``df.attrs["export"]``.
    """
    import pandas as pd

    model_file = Path(model_file)
    model = load_keras_model(model_file)
    x = as_model_input(np.asarray(images), model_input_size(model))
    y = np.asarray(labels)
    ref = _keras_probs(model, x)
    rows = [{"format": "keras", "size_kb": model_file.stat().st_size / 1024,
             "accuracy": float((ref.argmax(1) == y).mean()), "agreement": 1.0,
             "mean_abs_prob_diff": 0.0, "latency_ms": float("nan")}]
    if keras_latency_ms:
        rows[0]["latency_ms"] = keras_latency(model, calls=50, warmup=5)["median_ms"]
    with _quiet_tf_logs():
        report = export_tflite(model, out_dir, variants, representative=representative,
                               name=model_file.stem)
    for variant, entry in report["variants"].items():
        probs = TFLiteClassifier(entry["path"], num_threads=1).predict(x)
        rows.append({"format": f"tflite {variant}", "size_kb": entry["size_bytes"] / 1024,
                     "accuracy": float((probs.argmax(1) == y).mean()),
                     "agreement": float((probs.argmax(1) == ref.argmax(1)).mean()),
                     "mean_abs_prob_diff": float(np.abs(probs - ref).mean()),
                     "latency_ms": entry["latency_ms_1face_1thread"],
                     "path": entry["path"]})
    df = pd.DataFrame(rows)
    df.attrs["export"] = report
    return df


# --------------------------------------------------------------------------- CLI


def load_face_splits(spec: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """(calibration, check) face images from a dataset: its training and test splits.

    ``spec`` is a FER2013 ``.npz`` (arrays ``images`` and ``usage``) or anything
    :func:`fer_study.data.load_dataset` reads (``fer2013.csv``, a folder tree, "synthetic").
    """
    path = Path(spec)
    if path.suffix.lower() == ".npz":
        if not path.is_file():
            raise ExportError(f"data file not found: {path}")
        with np.load(path, allow_pickle=False) as d:
            if "images" not in d:
                raise ExportError(f"{path} has no 'images' array")
            images = d["images"]
            usage = d["usage"] if "usage" in d else np.full(len(images), "Training")
    else:
        from fer_study.data import DataError, load_dataset

        try:
            ds = load_dataset(spec)
        except DataError as exc:
            raise ExportError(str(exc)) from exc
        images, usage = ds.images, ds.usage
    train = usage == "Training"
    test = np.isin(usage, ("PublicTest", "Test"))
    if not test.any():
        test = ~train
    # Calibrate on training faces and check on held-out ones; fall back to all of them.
    return images[train] if train.any() else images, images[test] if test.any() else images


def _sample(images: np.ndarray, limit: int) -> np.ndarray:
    rng = np.random.default_rng(0)  # the same subset every run
    return images[np.sort(rng.permutation(len(images))[:limit])]


def cmd_export(args: argparse.Namespace) -> int:
    """``export`` subcommand; returns the process exit code (2 on a handled error)."""
    try:
        model = args.model_file or args.model or str(default_model_path("keras"))
        variants = [v.strip() for v in args.variants.split(",") if v.strip()]
        rep = check = None
        if args.data:
            train, test = load_face_splits(args.data)
            rep, check = _sample(train, args.representative), _sample(test, args.check)
        report = export_tflite(model, args.out_dir, variants, rep, check, name=args.name)
    except ExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for variant, entry in report["variants"].items():
        extra = ""
        if "top1_agreement" in entry:
            extra = (
                f"  agreement {entry['top1_agreement']:.4f}"
                f"  max|dp| {entry['max_abs_prob_diff']:.4f}"
            )
        print(
            f"{variant:8s} {entry['size_bytes'] / 1024:8.1f} KiB"
            f"  {entry['latency_ms_1face_1thread']:.3f} ms/face{extra}  {entry['path']}"
        )
    print(f"report: {Path(args.out_dir) / REPORT_NAME}")
    return 0


def add_export_subcommand(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``export`` on an argparse subparsers object (sets ``func=cmd_export``)."""
    p = subparsers.add_parser(
        "export",
        help="convert a .keras classifier to TFLite (float32, dynamic, int8)",
        description="Convert a .keras classifier to TFLite variants and report agreement.",
    )
    p.add_argument("model_file", nargs="?", metavar="MODEL",
                   help="input .keras file (default: the shipped model)")
    p.add_argument("--model", help="same as MODEL")
    p.add_argument("--format", default="tflite", choices=("tflite",),
                   help="export format (TFLite is the one the realtime pipeline runs)")
    p.add_argument("--out-dir", default="runs/export", help="output folder (default: runs/export)")
    p.add_argument("--name", help="file stem of the outputs (default: the model file's stem)")
    p.add_argument(
        "--variants", default=",".join(VARIANTS), help="comma-separated subset of %(default)s"
    )
    p.add_argument(
        "--data",
        help="FER2013 .npz (images, usage), fer2013.csv or image-folder tree: training "
        "images calibrate int8, test images measure agreement; required for int8",
    )
    p.add_argument("--representative", type=int, default=500, help="calibration images")
    p.add_argument("--check", type=int, default=1000, help="agreement-check images")
    p.set_defaults(func=cmd_export)
    return p
