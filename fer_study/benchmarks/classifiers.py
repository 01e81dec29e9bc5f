"""The classifier side of the real-time benchmark: which TFLite file runs, its latency, and
its accuracy on FER2013's own face crops beside the ``fer`` package's classifier."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from fer_study import export
from fer_study.benchmarks.common import display_path, stats_ms
from fer_study.realtime.classify import KerasClassifier, face_images_input


def build_standin_model(size: int = 48) -> Any:
    """An untrained mini-Xception (Arriaga et al. 2017, ~58k params) of the model contract.

    Same layer types and sizes as the classic real-time FER network, so its latency is
    representative; its predictions are meaningless.
    """
    import keras
    from keras import layers

    inp = keras.Input((size, size, 1))
    x = layers.Rescaling(1 / 127.5, offset=-1.0)(inp)
    for _ in range(2):
        x = layers.Conv2D(8, 3, use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
    for filters in (16, 32, 64, 128):
        res = layers.Conv2D(filters, 1, strides=2, padding="same", use_bias=False)(x)
        res = layers.BatchNormalization()(res)
        x = layers.SeparableConv2D(filters, 3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
        x = layers.SeparableConv2D(filters, 3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
        x = layers.Add()([x, res])
    x = layers.Conv2D(7, 3, padding="same")(x)
    x = layers.GlobalAveragePooling2D()(x)
    out = layers.Activation("softmax")(x)
    return keras.Model(inp, out, name="mini_xception_standin")


def prepare_model(
    model: str | None,
    standin: bool,
    workdir: Path,
    data: str | None = None,
    representative: int = 300,
) -> tuple[dict[str, Path], Any, dict[str, Any]]:
    """TFLite variants to benchmark, the Keras model if any, and a description.

    A ``.tflite`` file (default: the shipped one) is used as it is; a ``.keras`` model or
    the stand-in is exported first (int8 calibrated on ``data``'s training faces, else on
    face crops from the benchmark frames).
    """

    desc: dict[str, Any] = {}
    if standin:
        net = build_standin_model()
        desc.update(standin=True, params=int(net.count_params()),
                    note="UNTRAINED mini-Xception stand-in (random weights): timings only, "
                    "predictions meaningless; rerun with the shipped model for the report")
    else:
        from fer_study.models import load_model  # registers the package's custom layers

        path = Path(model) if model else export.DEFAULT_TFLITE_MODEL
        if not path.is_file():
            raise FileNotFoundError(f"model file not found: {path} (pass --model or --standin)")
        desc.update(standin=False, path=display_path(path))
        if path.suffix == ".tflite":
            keras_path = (export.DEFAULT_KERAS_MODEL if path == export.DEFAULT_TFLITE_MODEL
                          else path.with_suffix(".keras"))
            net = None
            if keras_path.is_file():  # the Keras twin, for the classifier comparison only
                net = load_model(keras_path)
            desc["keras_path"] = display_path(keras_path) if net is not None else None
            desc["params"] = int(net.count_params()) if net is not None else None
            return {"deployed": path}, net, desc
        net = load_model(path)
        desc["params"] = int(net.count_params())
    if data:
        train, _ = export.load_face_splits(data)
        rep = train[np.random.default_rng(0).permutation(len(train))[:representative]]
        desc["int8_calibration"] = f"{len(rep)} training images from {data}"
    else:
        from fer_study.benchmarks.scenes import fps_frames
        from fer_study.realtime.classify import crop_faces, to_gray

        frames, boxes = fps_frames("three_faces_50_36_26px", 30)
        rep = np.concatenate([crop_faces(to_gray(f), b, 48) for f, b in zip(frames, boxes,
                                                                            strict=True)])[..., 0]
        desc["int8_calibration"] = f"{len(rep)} astronaut crops from the benchmark frames"
    report = export.export_tflite(net, workdir, representative=rep, name="bench")
    desc["export"] = {k: {kk: vv for kk, vv in v.items() if kk != "path"}
                      for k, v in report["variants"].items()}
    return {k: Path(v["path"]) for k, v in report["variants"].items()}, net, desc


def bench_classifiers(
    variants: dict[str, Path], keras_model: Any, threads: int = 1, runs: int = 300
) -> dict[str, Any]:
    """Single-face and 3-face latency of each TFLite variant and of compiled Keras."""
    rng = np.random.default_rng(0)
    out: dict[str, Any] = {}
    cands: dict[str, Any] = {
        f"tflite_{k}": export.TFLiteClassifier(p, num_threads=threads) for k, p in variants.items()
    }
    if keras_model is not None:
        cands["keras_tf_function"] = KerasClassifier(keras_model)
    for name, clf in cands.items():
        size = clf.input_size
        res = {}
        for n in (1, 3):
            x = rng.uniform(0, 255, (n, size, size, 1)).astype(np.float32)
            for _ in range(20):
                clf.predict(x)
            ts = []
            for _ in range(runs):
                t0 = time.perf_counter()
                clf.predict(x)
                ts.append(time.perf_counter() - t0)
            res[f"{n}_face_ms"] = stats_ms(ts)
        out[name] = res
    if keras_model is not None:
        size = int(keras_model.input_shape[1])
        x = rng.uniform(0, 255, (1, size, size, 1)).astype(np.float32)
        keras_model.predict(x, verbose=0)
        ts = []
        for _ in range(20):
            t0 = time.perf_counter()
            keras_model.predict(x, verbose=0)
            ts.append(time.perf_counter() - t0)
        out["keras_model_predict_for_reference"] = {"1_face_ms": stats_ms(ts)}
    return out


def tflite_face_classifier(model: str | Path) -> Any:
    """uint8 (N, 48, 48) faces -> (N, 7) probabilities through a deployed TFLite file, with
    the pipeline's own crop rule (:func:`fer_study.realtime.classify.face_images_input`)."""
    clf = export.TFLiteClassifier(model)
    return lambda x: clf.predict(face_images_input(x, clf.input_size))


def crop_accuracy(x: np.ndarray, y: np.ndarray, deployed: Path, fer: Any | None,
                  provenance: dict[str, Any]) -> dict[str, Any]:
    """Classifier accuracy on FER2013 PrivateTest's own 48x48 crops (no detection): ours
    through the deployed TFLite file, fer's (a :class:`fer_study.baselines.FerBaseline`)
    through its own preprocessing and bundled classifier."""
    ours = float((tflite_face_classifier(deployed)(x).argmax(1) == y).mean())
    out: dict[str, Any] = {"split": "PrivateTest", "images": int(len(y)),
                           "data_sha256": provenance.get("sha256"), "ours": ours}
    if fer is not None:
        out["fer"] = float((fer.classify_faces(x).argmax(1) == y).mean())
        out["ours_ge_fer"] = ours >= out["fer"]
    return out
