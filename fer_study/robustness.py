"""Robustness, calibration and deployment-cost measurements (notebooks 06 and 07).

* Corruptions of uint8 faces at severities 1-5 (0 = clean): lighting (brightness, contrast,
  gamma), gaussian blur, gaussian noise and occlusion (random patch, eyes bar, mouth bar).
  Each is deterministic given its seed, and its severities are nested: the same noise field,
  patch position and bar centre are reused and only scaled, so a higher severity is always
  at least as far from the clean image as a lower one.
* :func:`evaluate_robustness`: accuracy per (corruption, severity) and the relative robustness
  (mean corrupted accuracy / clean accuracy), compared with the ``fer`` package's classifier
  on the same faces and corruptions as measured by ``scripts/benchmark_robustness.py``
  (:func:`fer_package_reference`).
* Calibration: ECE and reliability before / after temperature scaling, with T fitted on the
  selection split (PublicTest) and applied to the report split (PrivateTest) only.
* TFLite: size, accuracy, agreement with Keras and single-face latency of the float32,
  dynamic-range and int8 exports (:func:`fer_study.export.export_tflite`).
* Small helpers shared by notebooks 05-07 (model-run resolution, banner, figure saving) and
  notebook 07's composed demo clip.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fer_study.labels import CHANCE_ACCURACY, EMOTIONS, IMAGE_SIZE
from fer_study.provenance import REPO_ROOT
from fer_study.report import project_path

SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)
FER_ROBUSTNESS_RESULTS = "benchmark_robustness"  # written by scripts/benchmark_robustness.py
FER_ROBUSTNESS_COMMAND = "python scripts/benchmark_robustness.py --data data/fer2013.csv"
SYNTHETIC_BANNER = "SYNTHETIC DEMO DATA — not FER2013 results"
# Where eyes (with brows) and mouth sit in a 48x48 FER2013-style face, as fractions
# (row0, row1, col0, col1) of the image. FER2013 faces are roughly registered (eyes near row
# 19, mouth near row 36); the synthetic faces put eyes at row ~22 and mouth at ~35, inside the
# same bands. The occlusion bars below and the Grad-CAM region masses use the same bands.
FACE_REGIONS: dict[str, tuple[float, float, float, float]] = {
    "eyes": (0.29, 0.52, 0.10, 0.90),
    "mouth": (0.65, 0.88, 0.22, 0.78),
}


# --------------------------------------------------------------------------- corruptions

@dataclass(frozen=True)
class Corruption:
    name: str
    group: str
    params: tuple[float, ...]  # one value per severity 1..5
    unit: str  # what a parameter value means, for tables and plots
    apply: Callable[[np.ndarray, float, np.random.Generator], np.ndarray]  # float32 in / out


def _brightness(x: np.ndarray, delta: float, rng: np.random.Generator) -> np.ndarray:
    return x + delta * 255.0


def _contrast(x: np.ndarray, factor: float, rng: np.random.Generator) -> np.ndarray:
    mean = x.mean(axis=(1, 2), keepdims=True)
    return mean + (x - mean) * factor


def _gamma(x: np.ndarray, gamma: float, rng: np.random.Generator) -> np.ndarray:
    # gamma > 1 darkens mid-tones (under-exposure), the opposite direction to `brightness`.
    return 255.0 * (x / 255.0) ** gamma


def _blur(x: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    import cv2

    return np.stack([cv2.GaussianBlur(im, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REFLECT)
                     for im in x])


def _noise(x: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    return x + rng.standard_normal(x.shape, dtype=np.float32) * (sigma * 255.0)


def _patch(x: np.ndarray, side: float, rng: np.random.Generator) -> np.ndarray:
    n, h, w = x.shape
    # Centres inside the central half of the face, drawn before the size is used so every
    # severity occludes a growing square around the same point.
    cy = rng.uniform(0.25 * h, 0.75 * h, n)
    cx = rng.uniform(0.25 * w, 0.75 * w, n)
    half = side * h / IMAGE_SIZE / 2.0
    out = x.copy()
    for i in range(n):
        r0, r1 = int(max(0, round(cy[i] - half))), int(min(h, round(cy[i] + half)))
        c0, c1 = int(max(0, round(cx[i] - half))), int(min(w, round(cx[i] + half)))
        out[i, r0:r1, c0:c1] = 0.0
    return out


def _bar(region: str) -> Callable[[np.ndarray, float, np.random.Generator], np.ndarray]:
    r0, r1, c0, c1 = FACE_REGIONS[region]

    def apply(x: np.ndarray, height: float, rng: np.random.Generator) -> np.ndarray:
        _, h, w = x.shape
        centre = (r0 + r1) / 2 * h
        half = height * h / IMAGE_SIZE / 2.0
        out = x.copy()
        out[:, int(round(centre - half)):int(round(centre + half)),
            int(round(c0 * w)):int(round(c1 * w))] = 0.0
        return out

    return apply


CORRUPTIONS: dict[str, Corruption] = {c.name: c for c in [
    Corruption("brightness", "lighting", (0.1, 0.2, 0.3, 0.4, 0.5), "+ fraction of 255",
               _brightness),
    Corruption("contrast", "lighting", (0.6, 0.45, 0.3, 0.2, 0.1), "contrast factor",
               _contrast),
    Corruption("gamma", "lighting", (1.5, 2.0, 2.5, 3.0, 4.0), "gamma (darker)", _gamma),
    Corruption("gaussian_blur", "blur", (0.6, 1.0, 1.5, 2.0, 3.0), "sigma, px at 48x48",
               _blur),
    Corruption("gaussian_noise", "noise", (0.04, 0.08, 0.12, 0.18, 0.26),
               "sigma, fraction of 255", _noise),
    Corruption("occlusion_patch", "occlusion", (8, 12, 16, 20, 24), "square side, px at 48",
               _patch),
    Corruption("occlusion_eyes", "occlusion", (3, 5, 7, 9, 11), "bar height, px at 48",
               _bar("eyes")),
    Corruption("occlusion_mouth", "occlusion", (3, 5, 7, 9, 11), "bar height, px at 48",
               _bar("mouth")),
]}
GROUPS: dict[str, list[str]] = {}
for _c in CORRUPTIONS.values():
    GROUPS.setdefault(_c.group, []).append(_c.name)


def _check_name(name: str) -> Corruption:
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; valid: {', '.join(CORRUPTIONS)}")
    return CORRUPTIONS[name]


def _check_severity(severity: int) -> int:
    valid = (0, *SEVERITIES)
    if isinstance(severity, bool) or not isinstance(severity, (int, np.integer)) \
            or int(severity) not in valid:
        raise ValueError(f"severity must be one of {list(valid)} (0 = clean), "
                         f"got {severity!r}")
    return int(severity)


def corrupt(images: np.ndarray, name: str, severity: int, seed: int = 0) -> np.ndarray:
    """Corrupted copy of uint8 faces (N, H, W) (or one (H, W) face); severity 0 = unchanged."""
    c = _check_name(name)
    s = _check_severity(severity)
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim not in (2, 3):
        raise ValueError(f"images must be uint8 (N, H, W) or (H, W), got {images.dtype} "
                         f"{images.shape}")
    if s == 0:
        return images.copy()
    x = images[None] if images.ndim == 2 else images
    out = c.apply(x.astype(np.float32), c.params[s - 1], np.random.default_rng(seed))
    out = np.clip(np.round(out), 0, 255).astype(np.uint8)
    return out[0] if images.ndim == 2 else out


# --------------------------------------------------------------------------- evaluation

def _predictor(model: Any, tta: str, batch_size: int) -> Callable[[np.ndarray], np.ndarray]:
    keras = sys.modules.get("keras")  # not imported yet: `model` cannot be a Keras model
    if keras is not None and isinstance(model, keras.Model):
        from fer_study.evaluate import predict_probs

        return lambda x: predict_probs(model, x, tta=tta, batch_size=batch_size)
    if not callable(model):
        raise TypeError("model must be a Keras model or a callable uint8 (N, H, W) -> probs")
    if tta != "none":
        raise ValueError("test-time augmentation is only applied to Keras models; a callable "
                         "does its own preprocessing (use tta='none')")
    return model


def evaluate_robustness(model: Any, images: np.ndarray, labels: np.ndarray,
                        corruptions: Sequence[str] | None = None,
                        severities: Sequence[int] = SEVERITIES, tta: str = "none",
                        seed: int = 0, batch_size: int = 256,
                        max_images_per_call: int = 20000):
    """Accuracy for every (corruption, severity) pair: a DataFrame with one row per pair.

    Columns: corruption, group, severity, param, accuracy, relative_accuracy (to clean), n.
    ``df.attrs["clean_accuracy"]`` holds the clean accuracy. `model` is a Keras model
    (predicted with :func:`fer_study.evaluate.predict_probs`, honouring `tta`) or a callable
    mapping uint8 (N, H, W) faces to (N, 7) probabilities (e.g. a TFLite classifier).
    """
    import pandas as pd

    names = list(CORRUPTIONS) if corruptions is None else list(corruptions)
    for name in names:
        _check_name(name)
    sevs = [_check_severity(s) for s in severities]
    if not names or not sevs:
        raise ValueError("need at least one corruption and one severity")
    labels = np.asarray(labels)
    if len(images) != len(labels) or len(labels) == 0:
        raise ValueError(f"need equal, non-zero numbers of images ({len(images)}) and labels "
                         f"({len(labels)})")
    predict = _predictor(model, tta, batch_size)
    n = len(images)
    pairs = [(name, s) for name in names for s in sevs]
    # Corrupted copies are predicted in as few calls as memory allows (Keras pays a fixed
    # overhead per predict call): all 41 conditions at once for a few hundred faces.
    per_call = max(1, max_images_per_call // n)
    preds: list[np.ndarray] = []
    conditions = [("clean", 0), *pairs]
    for start in range(0, len(conditions), per_call):
        chunk = conditions[start:start + per_call]
        stack = np.concatenate([images if name == "clean" else corrupt(images, name, s, seed)
                                for name, s in chunk])
        preds += list(predict(stack).argmax(axis=1).reshape(len(chunk), n))
    clean = float((preds[0] == labels).mean())
    rows = []
    for (name, s), pred in zip(pairs, preds[1:]):
        acc = float((pred == labels).mean())
        rows.append({"corruption": name, "group": CORRUPTIONS[name].group, "severity": s,
                     "param": CORRUPTIONS[name].params[s - 1] if s else None, "accuracy": acc,
                     "relative_accuracy": acc / clean if clean > 0 else float("nan"), "n": n})
    df = pd.DataFrame(rows)
    df.attrs["clean_accuracy"] = clean
    df.attrs["tta"] = tta
    return df


def relative_robustness(df) -> float:
    """Mean accuracy over the corrupted (severity > 0) rows divided by the clean accuracy."""
    clean = df.attrs.get("clean_accuracy")
    if clean is None:
        raise ValueError("the DataFrame has no attrs['clean_accuracy']; use the output of "
                         "evaluate_robustness")
    corrupted = df[df["severity"] > 0]
    return float(corrupted["accuracy"].mean() / clean) if clean > 0 else float("nan")


def robustness_summary(df):
    """Per corruption: accuracy per severity (columns 0 = clean, 1..5), mean and relative."""
    table = df.pivot_table(index="corruption", columns="severity", values="accuracy",
                           sort=False)
    table.insert(0, 0, df.attrs["clean_accuracy"])
    corrupted = [c for c in table.columns if c != 0]
    table["mean"] = table[corrupted].mean(axis=1)
    table["relative"] = table["mean"] / df.attrs["clean_accuracy"]
    table.insert(0, "group", [CORRUPTIONS[n].group for n in table.index])
    return table


# --------------------------------------------------------------------------- calibration

def calibration_report(fit_probs: np.ndarray, fit_labels: np.ndarray, report_probs: np.ndarray,
                       report_labels: np.ndarray, bins: int = 15, fit_split: str = "PublicTest",
                       report_split: str = "PrivateTest") -> dict:
    """Temperature scaling fitted on `fit_split`, judged on `report_split`: T, ECE and NLL
    before/after and both reliability tables."""
    from fer_study.evaluate import (
        apply_temperature,
        expected_calibration_error,
        fit_temperature,
        reliability,
    )

    if fit_split == report_split:
        raise ValueError(f"the temperature must be fitted on another split than the one it is "
                         f"reported on (both {report_split!r})")
    t = fit_temperature(fit_probs, np.asarray(fit_labels))
    scaled = apply_temperature(report_probs, t)
    y = np.asarray(report_labels)

    def nll(p: np.ndarray) -> float:
        return float(-np.log(np.clip(p[np.arange(len(y)), y], 1e-12, 1.0)).mean())

    return {
        "temperature": t, "fit_split": fit_split, "report_split": report_split,
        "n_fit": int(len(fit_labels)), "n_report": int(len(y)), "bins": bins,
        "accuracy": float((report_probs.argmax(axis=1) == y).mean()),
        "ece_before": expected_calibration_error(report_probs, y, bins),
        "ece_after": expected_calibration_error(scaled, y, bins),
        "nll_before": nll(report_probs), "nll_after": nll(scaled),
        "mean_confidence_before": float(report_probs.max(axis=1).mean()),
        "mean_confidence_after": float(scaled.max(axis=1).mean()),
        "reliability_before": reliability(report_probs, y, bins),
        "reliability_after": reliability(scaled, y, bins),
    }


# --------------------------------------------------------------------------- TFLite

def _faces_for(images: np.ndarray, size: int) -> np.ndarray:
    """The model input of the evaluation protocol: centre crop when smaller, else resize."""
    from fer_study.augment import center_crop
    from fer_study.export import as_model_input

    if size < images.shape[1]:
        return center_crop(images, size).astype(np.float32)[..., None]
    return as_model_input(images, size)


def _median_latency_ms(fn: Callable[[np.ndarray], Any], one: np.ndarray, runs: int = 50
                       ) -> float:
    for _ in range(5):
        fn(one)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn(one)
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1000)


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
                     variants: Sequence[str] = ("float32", "dynamic", "int8"),
                     keras_latency: bool = True):
    """Export `model_file` to TFLite and compare every variant with the Keras model.

    Returns a DataFrame (one row for Keras, one per variant): file size, accuracy on
    (`images`, `labels`), top-1 agreement and mean |p - p_keras| with Keras on the same
    faces, and median single-face latency on 1 thread (Keras through a compiled
    ``tf.function``, as the real-time pipeline runs it). The export report is in
    ``df.attrs["export"]``.
    """
    import pandas as pd

    from fer_study.export import TFLiteClassifier, export_tflite

    model_file = Path(model_file)
    model = load_model(model_file)
    size = int(model.input_shape[1])
    x = _faces_for(np.asarray(images), size)
    y = np.asarray(labels)
    ref = np.concatenate([np.asarray(model(x[i:i + 256], training=False))
                          for i in range(0, len(x), 256)])
    rows = [{"format": "keras", "size_kb": model_file.stat().st_size / 1024,
             "accuracy": float((ref.argmax(1) == y).mean()), "agreement": 1.0,
             "mean_abs_prob_diff": 0.0, "latency_ms": float("nan")}]
    if keras_latency:
        from fer_study.realtime import KerasClassifier

        rows[0]["latency_ms"] = _median_latency_ms(KerasClassifier(model).predict, x[:1])
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


# --------------------------------------------------------------------------- notebook helpers

def fer_package_reference(reports_dir: str | Path, search_repo: bool = True) -> dict:
    """The bar to beat: the ``fer`` package's relative robustness on the same corruption
    suite, as measured by ``scripts/benchmark_robustness.py`` into
    ``<reports_dir>/results/benchmark_robustness.json`` (else, with `search_repo`, the
    repository's committed ``reports/results``). ``value`` is None, and ``source`` says how to
    measure it, when there is no such file: the bar is never a typed-in number."""
    name = f"{FER_ROBUSTNESS_RESULTS}.json"
    candidates = [Path(reports_dir) / "results" / name]
    if search_repo:
        candidates.append(REPO_ROOT / "reports" / "results" / name)
    for path in candidates:
        if not path.is_file():
            continue
        res = json.loads(path.read_text())
        fer = res.get("fer") or {}
        if fer.get("relative_robustness") is not None:
            data = res.get("data") or {}
            return {"value": float(fer["relative_robustness"]),
                    "clean_accuracy": fer.get("clean_accuracy"),
                    "source": f"measured by `{res.get('command')}` on {res.get('images')} "
                              f"{data.get('dataset', '?')} {res.get('split', '?')} faces, "
                              f"same corruptions and severities",
                    "file": repo_relative(path)}
    return {"value": None, "clean_accuracy": None, "file": None,
            "source": f"not measured here: run `{FER_ROBUSTNESS_COMMAND}`"}


def repo_relative(path: str | Path) -> str:
    """`path` relative to the repository root when it lies inside it (results files then
    read the same on every machine), else as given."""
    p = Path(path).resolve()
    try:
        return p.relative_to(REPO_ROOT).as_posix()
    except ValueError:
        return str(path)


def resolve_model_run(model_run: str | Path | None, runs_dir: str | Path,
                      reports_dir: str | Path) -> Path:
    """The run folder to analyse: `model_run`, else the best run selected on PublicTest by
    notebook 04 (``results/04_model_comparison.json`` key ``best_run_dir``), else
    ``{runs_dir}/baseline_cnn``. Raises FileNotFoundError naming what was tried."""
    tried = []
    if model_run:
        candidates = [project_path(model_run)]
    else:
        candidates = []
        comparison = project_path(reports_dir) / "results" / "04_model_comparison.json"
        if comparison.is_file():
            best = json.loads(comparison.read_text()).get("best_run_dir")
            if best:
                candidates.append(project_path(best))
        else:
            tried.append(f"{comparison} (missing)")
        candidates.append(project_path(runs_dir) / "baseline_cnn")
    for c in candidates:
        if (c / "best.keras").is_file():
            return c
        tried.append(f"{c / 'best.keras'} (missing)")
    raise FileNotFoundError("no trained model found; tried " + "; ".join(tried) +
                            ". Train one (python -m fer_study train ...) or pass model_run.")


def load_model(path: str | Path):
    """Load a ``.keras`` classifier for inference, transfer models included: their custom
    layers (GrayToRGB, BackbonePreprocess) register when fer_study.models is imported."""
    import fer_study.models  # noqa: F401
    from fer_study.export import load_keras_model

    return load_keras_model(path)


def run_info(run_dir: Path) -> dict:
    """Model name and headline metrics of a run folder (empty dict if metrics.json is absent)."""
    f = Path(run_dir) / "metrics.json"
    if not f.is_file():
        return {}
    m = json.loads(f.read_text())
    return {"model": m.get("model"), "kind": m.get("kind"),
            "config_data": m.get("config", {}).get("data"),
            "input_size": m.get("config", {}).get("input_size")}


def banner_html(synthetic: bool) -> str:
    """The banner every notebook shows first when it runs on the synthetic demo set."""
    if not synthetic:
        return "<p><b>Data: FER2013.</b></p>"
    return ('<div style="background:#b00020;color:white;padding:10px;font-size:18px;'
            f'font-weight:bold;text-align:center">{SYNTHETIC_BANNER}</div>')


def show_banner(ds) -> None:
    """Display the banner (HTML, with a plain-text twin for text viewers) for a Dataset."""
    from IPython.display import display

    src = ds.source
    text = SYNTHETIC_BANNER if ds.is_synthetic else \
        f"Data: {src.get('dataset', '?')} ({src.get('path', '?')})"
    display({"text/plain": text, "text/html": banner_html(ds.is_synthetic)}, raw=True)


def load_study_data(data: str, ferplus: str | None, synthetic_sizes: dict | None, seed: int):
    """The notebooks' common `data` parameters -> Dataset (relative paths from the repo)."""
    from fer_study.data import load_dataset

    spec = data if str(data) == "synthetic" else project_path(data)
    return load_dataset(spec, ferplus=project_path(ferplus) if ferplus else None,
                        synthetic_sizes=synthetic_sizes, seed=seed)


def auto_cap(value: int | str | None, profile: str, by_profile: dict[str, int | None],
             default: int | None = None) -> int | None:
    """A `max_images`-style parameter: an int or None (no cap) as given; "auto" = the
    profile's entry in `by_profile` (else `default`)."""
    if value == "auto":
        return by_profile.get(profile, default)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                              or value < 1):
        raise ValueError(f"expected a positive int, None or 'auto', got {value!r}")
    return value


def write_results(reports_dir: str | Path, stage: str, payload: dict, ds,
                  figures: Sequence[str | Path], study: dict) -> Path:
    """``{reports_dir}/results/{stage}.json``: payload + figures (relative to reports_dir),
    the study parameters, data provenance and :func:`fer_study.provenance.stamp`."""
    from fer_study.provenance import stamp, write_json

    root = project_path(reports_dir)
    rel = [str(Path(f).resolve().relative_to(root.resolve())) if Path(f).is_absolute()
           else str(f) for f in figures]
    out = {"notebook": stage, "status": "ok", "synthetic": ds.is_synthetic, **payload,
           "figures": rel, "study": study, "data": ds.provenance(), **stamp()}
    return write_json(root / "results" / f"{stage}.json", _finite(out))


def records(rows, digits: int = 3, ints: Sequence[str] = ("n", "frames")) -> list[dict]:
    """A DataFrame or list of dicts as JSON-ready rows: floats rounded, NaN -> None, numpy
    scalars -> Python, and the `ints` columns as integers (pandas turns them into floats as
    soon as one row lacks a value)."""
    if hasattr(rows, "to_dict"):
        rows = rows.to_dict("records")
    out = []
    for row in rows:
        clean = {}
        for k, v in row.items():
            v = v.item() if isinstance(v, np.generic) else v
            if isinstance(v, float):
                v = None if not np.isfinite(v) else (int(v) if k in ints else round(v, digits))
            clean[k] = v
        out.append(clean)
    return out


def _finite(obj: Any) -> Any:
    """NaN / inf -> None, recursively: strict JSON readers reject NaN."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, (float, np.floating)) and not np.isfinite(obj):
        return None
    return obj


def stratified_sample(labels: np.ndarray, n: int | None, seed: int = 0) -> np.ndarray:
    """Sorted indices of at most `n` items, as balanced over classes as the data allows."""
    labels = np.asarray(labels)
    if n is None or n >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    pools = [rng.permutation(np.flatnonzero(labels == c)).tolist()
             for c in range(len(EMOTIONS))]
    picked: list[int] = []
    while len(picked) < n:  # round-robin over classes until n are taken
        for pool in pools:
            if pool and len(picked) < n:
                picked.append(pool.pop())
    return np.sort(np.asarray(picked, dtype=np.int64))


def random_subset(n: int, cap: int | None, seed: int = 0) -> np.ndarray:
    """Sorted indices of a uniform random subset of size `cap` (all of range(n) if None):
    unlike :func:`stratified_sample` it keeps the split's own class mix."""
    if cap is None or cap >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).permutation(n)[:cap])


def save_figure(fig, reports_dir: str | Path, name: str) -> Path:
    """Save `fig` as ``{reports_dir}/figures/{name}.png`` and return the path."""
    path = project_path(reports_dir) / "figures" / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


# --------------------------------------------------------------------------- plots

def plot_corruption_examples(image: np.ndarray, corruptions: Sequence[str] | None = None,
                             severities: Sequence[int] = SEVERITIES, seed: int = 0):
    """One face under every corruption (rows) and severity (columns, clean first)."""
    import matplotlib.pyplot as plt

    names = list(corruptions or CORRUPTIONS)
    cols = [0, *severities]
    fig, axes = plt.subplots(len(names), len(cols), figsize=(1.3 * len(cols), 1.4 * len(names)),
                             squeeze=False)
    for r, name in enumerate(names):
        for j, s in enumerate(cols):
            ax = axes[r, j]
            ax.imshow(corrupt(image, name, s, seed), cmap="gray", vmin=0, vmax=255)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title("clean" if s == 0 else f"severity {s}", fontsize=8)
        axes[r, 0].set_ylabel(name.replace("_", "\n"), fontsize=8)
    fig.tight_layout()
    return fig


def plot_robustness_curves(df, title: str = "Accuracy under corruption"):
    """One panel per corruption: accuracy against severity (0 = clean), chance dashed."""
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(df["corruption"]))
    ncols = min(4, len(names))
    nrows = -(-len(names) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.0 * ncols, 2.5 * nrows), sharey=True,
                             squeeze=False)
    clean = df.attrs["clean_accuracy"]
    for ax, name in zip(axes.flat, names):
        d = df[df["corruption"] == name].sort_values("severity")
        ax.plot([0, *d["severity"]], [clean, *d["accuracy"]], marker="o")
        ax.axhline(CHANCE_ACCURACY, ls="--", c="grey", lw=0.8)
        ax.set_title(f"{name} ({CORRUPTIONS[name].group})", fontsize=9)
        ax.set_xticks(range(0, 6))
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(names):]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel("accuracy")
    for ax in axes[-1, :]:
        ax.set_xlabel("severity")
    fig.suptitle(f"{title} (dashed: chance {CHANCE_ACCURACY:.2f})", fontsize=11)
    fig.tight_layout()
    return fig


def plot_robustness_heatmap(df, title: str = "Accuracy by corruption and severity"):
    """Corruption x severity table of accuracies (clean column first), annotated."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    table = robustness_summary(df).drop(columns=["group", "relative"])
    table.columns = ["clean" if c == 0 else str(c) for c in table.columns]
    fig, ax = plt.subplots(figsize=(1.0 * table.shape[1] + 2.5, 0.45 * len(table) + 1.2))
    sns.heatmap(table.astype(float), annot=True, fmt=".2f", vmin=0, vmax=1, cmap="viridis",
                cbar_kws={"label": "accuracy"}, ax=ax)
    ax.set_xlabel("severity")
    ax.set_ylabel("")
    ax.set_title(title, fontsize=11)
    fig.tight_layout()
    return fig


def plot_reliability(report: dict):
    """Reliability diagrams of the report split before and after temperature scaling."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 4), sharey=True)
    for ax, when in zip(axes, ("before", "after")):
        rel = report[f"reliability_{when}"]
        edges = np.asarray(rel["edges"])
        mids = (edges[:-1] + edges[1:]) / 2
        width = edges[1] - edges[0]
        acc = np.array([a if a is not None else np.nan for a in rel["accuracy"]])
        conf = np.array([c if c is not None else np.nan for c in rel["confidence"]])
        ax.bar(mids, np.nan_to_num(acc), width=width * 0.95, color="tab:blue", alpha=0.8,
               label="accuracy")
        ax.bar(mids, np.nan_to_num(conf - acc), bottom=np.nan_to_num(acc), width=width * 0.95,
               color="tab:red", alpha=0.3, label="gap to confidence")
        ax.plot([0, 1], [0, 1], "k--", lw=0.8)
        t = f" (T = {report['temperature']:.2f})" if when == "after" else ""
        ax.set_title(f"{when} temperature scaling{t}\nECE {report[f'ece_{when}']:.3f}, "
                     f"NLL {report[f'nll_{when}']:.3f}", fontsize=10)
        ax.set_xlabel("confidence")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
    axes[0].set_ylabel("accuracy")
    axes[0].legend(loc="upper left", fontsize=8)
    fig.suptitle(f"Reliability on {report['report_split']} (n={report['n_report']}); "
                 f"T fitted on {report['fit_split']}", fontsize=11)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- notebook 07

def compose_demo_video(path: str | Path, n_frames: int = 48, fps: float = 12.0,
                       size: tuple[int, int] = (640, 480), face_px: int = 150,
                       seed: int = 0) -> Path:
    """Write a short composed clip: scikit-image's astronaut photo (a real frontal face),
    scaled so her face is about `face_px` wide, sliding across a grey studio background.

    Only a demo input for the deployment pipeline: one face, one expression, synthetic motion.
    """
    import cv2
    from skimage import data as skdata

    w, h = size
    rgb = skdata.astronaut()  # 512x512; the face is at about (177, 66, 95, 95)
    head = cv2.cvtColor(rgb[0:240, 110:350], cv2.COLOR_RGB2BGR)
    scale = face_px / 95.0
    head = cv2.resize(head, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    hh, hw = head.shape[:2]
    if hh >= h or hw >= w:
        raise ValueError(f"face_px={face_px} makes the head ({hw}x{hh}) too big for {w}x{h}")
    # Feathered elliptical mask so the pasted head does not show a hard rectangle.
    mask = np.zeros((hh, hw), np.float32)
    cv2.ellipse(mask, (hw // 2, hh // 2), (int(hw * 0.46), int(hh * 0.48)), 0, 0, 360, 1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), sigmaX=max(2.0, hw / 30))[..., None]
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    background = 90 + 60 * (xx / w) + 30 * (yy / h)
    background = np.repeat(background[..., None], 3, axis=2)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"cannot write video {path}")
    try:
        for k in range(n_frames):
            t = k / max(1, n_frames - 1)
            x0 = int(round(t * (w - hw)))
            y0 = int(round((h - hh) / 2 + 0.15 * (h - hh) * np.sin(2 * np.pi * t)))
            frame = background + rng.normal(0, 3, background.shape)  # sensor-like noise
            roi = frame[y0:y0 + hh, x0:x0 + hw]
            frame[y0:y0 + hh, x0:x0 + hw] = mask * head + (1 - mask) * roi
            writer.write(np.clip(frame, 0, 255).astype(np.uint8))
    finally:
        writer.release()
    return path


def read_frames(path: str | Path, indices: Sequence[int]) -> list[np.ndarray]:
    """The BGR frames at `indices` of a video file (missing indices are skipped)."""
    import cv2

    wanted = set(int(i) for i in indices)
    cap = cv2.VideoCapture(str(path))
    frames, k = [], 0
    try:
        while wanted:
            ok, frame = cap.read()
            if not ok:
                break
            if k in wanted:
                frames.append(frame)
                wanted.discard(k)
            k += 1
    finally:
        cap.release()
    return frames


def stage_latency_table(timings: dict[str, list[float]], name: str = "pipeline") -> list[dict]:
    """Median and 90th-percentile milliseconds per pipeline stage (from Pipeline.timings)."""
    rows = []
    for stage, values in timings.items():
        v = np.asarray(values, dtype=np.float64) * 1000
        if v.size == 0:
            continue
        rows.append({"model": name, "stage": stage, "median_ms": float(np.median(v)),
                     "p90_ms": float(np.percentile(v, 90)), "frames": int(v.size)})
    return rows


def plot_frames(frames: Sequence[np.ndarray], titles: Sequence[str] | None = None,
                ncols: int = 3):
    """A grid of BGR frames."""
    import matplotlib.pyplot as plt

    n = len(frames)
    ncols = max(1, min(ncols, n))
    nrows = max(1, -(-n // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.3 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, (ax, frame) in enumerate(zip(axes.flat, frames)):
        ax.imshow(frame[..., ::-1])
        if titles:
            ax.set_title(titles[i], fontsize=9)
    fig.tight_layout()
    return fig
