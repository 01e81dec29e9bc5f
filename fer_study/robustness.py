"""Robustness of a classifier to corrupted faces (notebook 06 and the robustness benchmark).

* Corruptions of uint8 faces at severities 1-5 (0 = clean): lighting (brightness, contrast,
  gamma), gaussian blur, gaussian noise and occlusion (random patch, eyes bar, mouth bar).
  Each is deterministic given its seed, and its severities are nested: the same noise field,
  patch position and bar centre are reused and only scaled, so a higher severity is always
  at least as far from the clean image as a lower one.
* :func:`evaluate_robustness`: accuracy per (corruption, severity); :func:`robustness_row`
  judges it twice, on the mean corrupted accuracy itself and on the retention (relative
  robustness: mean corrupted / clean accuracy). A ratio alone rewards a weak clean model (one
  that is already guessing has nothing to lose), so both are always shown together.
* :func:`fer_comparison`: the same two numbers for the shipped model and the ``fer`` package's
  classifier, read from ``scripts/benchmark_robustness.py``'s results file, when that
  benchmark ran on the same data.
* Plots of both.

Calibration lives in :mod:`fer_study.evaluate`, the TFLite comparison in
:mod:`fer_study.export`, the notebooks' shared helpers in :mod:`fer_study.notebook`.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# random_subset and _finite are unused here: scripts/benchmark_robustness.py
# (the real-time branch's, moving into the package there) still reads them through this
# module. They live in data and provenance.
from fer_study.data import random_subset  # noqa: F401
from fer_study.labels import CHANCE_ACCURACY, FACE_REGIONS, IMAGE_SIZE
from fer_study.provenance import REPO_ROOT, repo_relative
from fer_study.provenance import finite as _finite  # noqa: F401

SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)
FER_ROBUSTNESS_RESULTS = "benchmark_robustness"  # written by scripts/benchmark_robustness.py
FER_ROBUSTNESS_COMMAND = "python scripts/benchmark_robustness.py --data data/fer2013.csv"


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


def robustness_row(df) -> dict:
    """One model's robustness in absolute and relative terms: clean accuracy, mean corrupted
    accuracy (over every corruption and severity > 0), retention (= relative robustness, the
    second / the first) and the mean accuracy of each corruption group."""
    clean = df.attrs["clean_accuracy"]
    corrupted = df[df["severity"] > 0]
    mean = float(corrupted["accuracy"].mean())
    return {"clean accuracy": float(clean), "mean corrupted accuracy": mean,
            "retention": mean / clean if clean > 0 else float("nan"),
            **{f"{g} accuracy": float(corrupted[corrupted["group"] == g]["accuracy"].mean())
               for g in dict.fromkeys(corrupted["group"])}}


def _benchmark_row(entry: Mapping) -> dict:
    """A benchmark entry (``ours`` / ``fer``) in the columns of :func:`robustness_row`."""
    clean = float(entry["clean_accuracy"])
    by_corruption = entry.get("by_corruption") or {}
    # every corruption has the same severities, so the mean of the per-corruption means is
    # the mean over all corrupted conditions (= relative robustness x clean accuracy)
    mean = (float(np.mean([v["mean"] for v in by_corruption.values()])) if by_corruption
            else float(entry["relative_robustness"]) * clean)
    groups = {g: float(np.mean([by_corruption[c]["mean"] for c in names if c in by_corruption]))
              for g, names in GROUPS.items() if any(c in by_corruption for c in names)}
    return {"clean accuracy": clean, "mean corrupted accuracy": mean,
            "retention": float(entry["relative_robustness"]),
            **{f"{g} accuracy": v for g, v in groups.items()}}


def fer_comparison(benchmark_file: str | os.PathLike | None, data: Mapping) -> dict:
    """The shipped model and the ``fer`` package under the same corruptions, from the
    robustness benchmark's results file (``scripts/benchmark_robustness.py``), when it ran
    on the same data as `data` (a provenance dict: same sha256, not synthetic).

    Returns ``available``; ``reason`` (why not, or where the numbers came from);
    ``command``, ``images``, ``split`` and ``rows`` ({"ours": row, "fer": row}, in the
    columns of :func:`robustness_row`) when available. Never a typed-in number.
    """
    out: dict[str, Any] = {"available": False, "rows": {}, "command": FER_ROBUSTNESS_COMMAND}
    if data.get("synthetic"):
        out["reason"] = ("not available: this notebook's data are the synthetic demo set, and "
                         "the fer package was measured on FER2013 (`"
                         f"{FER_ROBUSTNESS_COMMAND}`); numbers on other faces do not compare")
        return out
    path = None if benchmark_file is None else Path(benchmark_file)
    if path is not None and not path.is_absolute():
        path = REPO_ROOT / path
    if path is None or not path.is_file():
        out["reason"] = f"not measured: run `{FER_ROBUSTNESS_COMMAND}`"
        return out
    res = json.loads(path.read_text())
    bench_data = res.get("data") or {}
    if not data.get("sha256") or bench_data.get("sha256") != data.get("sha256"):
        out["reason"] = (f"not available: {repo_relative(path)} was measured on other data "
                         f"(sha256 {str(bench_data.get('sha256'))[:12]}, this notebook's "
                         f"{str(data.get('sha256'))[:12]}); re-run `{FER_ROBUSTNESS_COMMAND}`")
        return out
    rows = {k: _benchmark_row(res[k]) for k in ("ours", "fer") if res.get(k)}
    if "fer" not in rows:
        out["reason"] = f"{repo_relative(path)} has no fer entry (run without --no-fer)"
        return out
    out.update(available=True, rows=rows, command=res.get("command"),
               images=res.get("images"), split=res.get("split"), file=repo_relative(path),
               reason=f"measured by `{res.get('command')}` on {res.get('images')} "
                      f"{bench_data.get('dataset', '?')} {res.get('split', '?')} faces (seed "
                      f"{res.get('seed')}), same corruptions and severities; read from "
                      f"{repo_relative(path)}")
    return out


def fer_verdict(comparison: Mapping) -> str:
    """One sentence on the shipped model against ``fer`` from :func:`fer_comparison`: on
    absolute corrupted accuracy, on retention, and the corruption groups where it is lower."""
    if not comparison.get("available"):
        return f"fer package: {comparison.get('reason')}"
    ours, fer = comparison["rows"]["ours"], comparison["rows"]["fer"]

    def side(key: str) -> str:
        return "above" if ours[key] > fer[key] else "not above"

    lower = [k.removesuffix(" accuracy") for k in ours
             if k.endswith(" accuracy") and k not in ("clean accuracy", "mean corrupted accuracy")
             and k in fer and ours[k] < fer[k]]
    return (f"shipped model vs fer package, same {comparison.get('images')} "
            f"{comparison.get('split')} faces: mean corrupted accuracy "
            f"{ours['mean corrupted accuracy']:.3f} vs {fer['mean corrupted accuracy']:.3f} "
            f"({side('mean corrupted accuracy')} fer); retention {ours['retention']:.3f} vs "
            f"{fer['retention']:.3f} ({side('retention')} fer); clean "
            f"{ours['clean accuracy']:.3f} vs {fer['clean accuracy']:.3f}; lower than fer in "
            f"absolute terms under: {', '.join(lower) or 'no corruption group'}")


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
    """One panel per corruption: accuracy against severity (0 = clean), chance dashed. `df`:
    one :func:`evaluate_robustness` frame, or {label: frame} to draw several models."""
    import matplotlib.pyplot as plt

    frames = df if isinstance(df, Mapping) else {None: df}
    names = list(dict.fromkeys(next(iter(frames.values()))["corruption"]))
    ncols = min(4, len(names))
    nrows = -(-len(names) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.0 * ncols, 2.5 * nrows), sharey=True,
                             squeeze=False)
    for ax, name in zip(axes.flat, names):
        for label, frame in frames.items():
            d = frame[frame["corruption"] == name].sort_values("severity")
            ax.plot([0, *d["severity"]], [frame.attrs["clean_accuracy"], *d["accuracy"]],
                    marker="o", label=label)
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
    if len(frames) > 1:
        axes.flat[0].legend(fontsize=7, loc="lower left")
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
