"""What is in a set of Grad-CAM maps, and whether it is faithful to the model.

* Where the heat lies: the mean map per class, the share of each map's mass in the eye and
  mouth bands (``labels.FACE_REGIONS``) next to those bands' share of the image area (what a
  map that ignores the face would score), and the examples worth showing.
* Whether the map is faithful (:func:`deletion_test`): a heatmap *correlates* with the class
  score; if its hot pixels are what the model uses, hiding them should lower the explained
  class's probability more than hiding as many pixels chosen without the map. The test hides
  the top k% of the pixels the model sees (filled with the face's mean grey, or a blur of it)
  ranked three ways: by the Grad-CAM map, by a **uniform** map (no location preferred; ties
  broken in a random order of cells of the Grad-CAM grid, so hidden areas are blobs of the
  same size as Grad-CAM's rather than salt-and-pepper noise), and by a **centre prior** (a
  map peaked in the middle of the face, where any face classifier looks). Per face it takes
  the drop in probability, averaged over the fractions; the verdict compares Grad-CAM with
  each baseline by a paired bootstrap 95% interval over faces (``stats.bootstrap_mean_ci``):
  better, worse, or a tie when the interval contains zero.

numpy and OpenCV; the model is only called (any Keras model of the input contract).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fer_study.labels import EMOTIONS, FACE_REGIONS, NUM_CLASSES
from fer_study.model_input import center_crop, model_input_size
from fer_study.stats import bootstrap_mean_ci

__all__ = [
    "DELETION_FRACTIONS",
    "DeletionTest",
    "centre_prior",
    "class_mean_heatmaps",
    "deletion_test",
    "region_mass",
    "region_masks",
    "region_table",
    "select_examples",
]

# --------------------------------------------------------------------------- where the heat lies

def class_mean_heatmaps(heatmaps: np.ndarray, labels: np.ndarray
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Mean heatmap per class (7, H, W) (zeros where a class is absent) and the counts."""
    labels = np.asarray(labels)
    means = np.zeros((NUM_CLASSES, *heatmaps.shape[1:]), np.float32)
    counts = np.bincount(labels, minlength=NUM_CLASSES)
    for c in range(NUM_CLASSES):
        if counts[c]:
            means[c] = heatmaps[labels == c].mean(axis=0)
    return means, counts


def region_masks(shape: tuple[int, int],
                 regions: dict[str, tuple[float, float, float, float]] | None = None
                 ) -> dict[str, np.ndarray]:
    """Boolean masks of the face regions for an image shape."""
    h, w = shape
    out = {}
    for name, (r0, r1, c0, c1) in (regions or FACE_REGIONS).items():
        m = np.zeros((h, w), bool)
        m[round(r0 * h):round(r1 * h), round(c0 * w):round(c1 * w)] = True
        out[name] = m
    return out


def region_mass(heatmaps: np.ndarray,
                regions: dict[str, tuple[float, float, float, float]] | None = None
                ) -> dict[str, np.ndarray]:
    """Share of each heatmap's total mass per region (N,), plus "other" for the rest."""
    masks = region_masks(heatmaps.shape[1:], regions)
    total = heatmaps.reshape(len(heatmaps), -1).sum(axis=1)
    out = {}
    for name, m in masks.items():
        with np.errstate(invalid="ignore", divide="ignore"):
            out[name] = np.where(total > 0, heatmaps[:, m].sum(axis=1) / total, np.nan)
    out["other"] = 1.0 - sum(out.values())
    return out


def region_table(heatmaps: np.ndarray, labels: np.ndarray, preds: np.ndarray | None = None,
                 view: int | None = None):
    """Mean heat-mass share per class in the eye and mouth regions (a DataFrame), with a last
    row giving each region's share of the area the model sees (the centre `view` x `view`
    pixels of the frame; None = all of it): what a uniform map would score."""
    import pandas as pd

    mass = region_mass(heatmaps)
    rows = []
    for c, name in enumerate(EMOTIONS):
        m = np.asarray(labels) == c
        if not m.any():
            continue
        row = {"class": name, "n": int(m.sum())}
        if preds is not None:
            row["accuracy"] = float((np.asarray(preds)[m] == c).mean())
        # All-zero maps (no positive evidence anywhere) have no mass shares: NaN, not 0.
        row.update({f"{r}_mass": float(np.mean(v[m][np.isfinite(v[m])]))
                    if np.isfinite(v[m]).any() else float("nan") for r, v in mass.items()})
        rows.append(row)
    h, w = heatmaps.shape[1:]
    seen = np.zeros((h, w), bool)
    vh, vw = (view, view) if view else (h, w)
    top, left = (h - vh) // 2, (w - vw) // 2  # center_crop's offsets
    seen[top:top + vh, left:left + vw] = True
    area = {f"{r}_mass": float(m[seen].mean())
            for r, m in region_masks(heatmaps.shape[1:]).items()}
    area["other_mass"] = 1.0 - sum(area.values())
    rows.append({"class": "(area share)", "n": None, **area})
    return pd.DataFrame(rows)


def select_examples(labels: np.ndarray, probs: np.ndarray, per_class: int = 2
                    ) -> dict[int, dict[str, list[int]]]:
    """Per true class, the indices of its most confident correct and most confident wrong
    predictions (up to `per_class` each)."""
    labels = np.asarray(labels)
    pred, conf = probs.argmax(axis=1), probs.max(axis=1)
    out: dict[int, dict[str, list[int]]] = {}
    for c in range(NUM_CLASSES):
        sel = {}
        for kind, ok in (("correct", pred == labels), ("wrong", pred != labels)):
            idx = np.flatnonzero((labels == c) & ok)
            sel[kind] = idx[np.argsort(-conf[idx], kind="stable")][:per_class].tolist()
        out[c] = sel
    return out




# --------------------------------------------------------------------------- faithfulness

DELETION_FRACTIONS = (0.05, 0.1, 0.2)  # share of the model's view hidden
GRADCAM, UNIFORM, CENTRE = "Grad-CAM", "uniform", "centre prior"


@dataclass
class DeletionTest:
    """Drops of the explained class's probability when the top pixels of each ranking are
    hidden; ``drops[ranking]`` is (N, len(fractions)), positive = the probability fell."""

    fractions: tuple[float, ...]
    fill: str
    class_idx: np.ndarray  # (N,) the class whose probability is followed
    base_prob: np.ndarray  # (N,) its probability on the intact faces
    drops: dict[str, np.ndarray]
    n_boot: int = 1000
    seed: int = 0

    def mean_drop(self, ranking: str) -> np.ndarray:
        """(N,) each face's drop averaged over the fractions (a deletion-curve area)."""
        return self.drops[ranking].mean(axis=1)

    def compare(self, baseline: str) -> dict:
        """Grad-CAM's mean drop minus `baseline`'s (paired over faces) with its bootstrap
        interval and the verdict: Grad-CAM better, worse, or a tie."""
        ci = bootstrap_mean_ci(self.mean_drop(GRADCAM) - self.mean_drop(baseline),
                               n_boot=self.n_boot, seed=self.seed)
        if ci["low"] > 0:
            verdict = f"Grad-CAM better than {baseline}"
        elif ci["high"] < 0:
            verdict = f"{baseline} better than Grad-CAM"
        else:
            verdict = "tie (interval contains 0)"
        return {**ci, "verdict": verdict}

    def claim(self) -> str:
        """What the maps may be said to show, no more than the test supports: one sentence
        from the verdicts against the uniform map and the centre prior."""
        uni, cen = self.compare(UNIFORM), self.compare(CENTRE)

        def ci(c: dict) -> str:
            return f"{c['value']:+.3f} [{c['low']:+.3f}, {c['high']:+.3f}]"

        if uni["low"] > 0:
            text = (f"Hiding the pixels Grad-CAM ranks highest lowers the explained class's "
                    f"probability more than hiding as many pixels of a uniform map ({ci(uni)} "
                    f"mean difference, 95% CI): on these faces the hot regions are ones the "
                    f"model uses")
            if cen["low"] > 0:
                return text + f", and they beat a centre prior too ({ci(cen)})."
            return (text + f"; but not more than a centre prior ({ci(cen)}), so the maps are not "
                    f"shown to add more than 'the middle of the face matters'.")
        if uni["high"] < 0:
            return (f"Hiding the pixels Grad-CAM ranks highest lowers the explained class's "
                    f"probability LESS than hiding pixels of a uniform map ({ci(uni)}): the maps "
                    f"point away from what the model uses; do not read them as explanations.")
        return (f"Hiding the pixels Grad-CAM ranks highest changes the explained class's "
                f"probability no more than hiding pixels of a uniform map ({ci(uni)}, a tie): "
                f"on this sample the maps are not shown to be faithful; read them as "
                f"illustrations, not evidence of where the model looks.")

    def drop_rows(self) -> list[dict]:
        """One row per ranking: mean drop at each fraction, over all, and its interval."""
        rows = []
        for name, d in self.drops.items():
            ci = bootstrap_mean_ci(d.mean(axis=1), n_boot=self.n_boot, seed=self.seed)
            rows.append({"map": name,
                         **{f"drop @{f:.0%}": float(d[:, j].mean())
                            for j, f in enumerate(self.fractions)},
                         "mean drop": ci["value"], "low": ci["low"], "high": ci["high"]})
        return rows

    def verdict_rows(self) -> list[dict]:
        """Grad-CAM against each baseline: the paired difference, interval and verdict."""
        rows = []
        for name in self.drops:
            if name != GRADCAM:
                c = self.compare(name)
                rows.append({"comparison": f"Grad-CAM - {name}", "difference": c["value"],
                             "low": c["low"], "high": c["high"], "verdict": c["verdict"]})
        return rows


def _order(scores: np.ndarray, tiebreak: np.ndarray) -> np.ndarray:
    """Pixel indices of each (N, P) score row, highest first; ties by `tiebreak`, highest
    first (a random map: every ranking breaks its ties the same way)."""
    return np.lexsort((-tiebreak, -scores), axis=-1)


def _random_maps(n: int, size: int, grid: tuple[int, int], rng: np.random.Generator
                 ) -> np.ndarray:
    """Random values on a coarse grid, upsampled as Grad-CAM upsamples its maps."""
    import cv2

    cells = rng.random((n, *grid)).astype(np.float32)
    return np.stack([cv2.resize(c, (size, size), interpolation=cv2.INTER_LINEAR) for c in cells])


def centre_prior(size: int) -> np.ndarray:
    """A (size, size) map peaked in the middle of the face (an isotropic Gaussian, sd a
    quarter of the side): where a face classifier looks without any image evidence."""
    r = (np.arange(size) - (size - 1) / 2) / (size / 4)
    return np.exp(-0.5 * (r[:, None] ** 2 + r[None, :] ** 2)).astype(np.float32)


def _fill(crops: np.ndarray, fill: str) -> np.ndarray:
    if fill == "mean":
        return np.broadcast_to(crops.mean(axis=(1, 2), keepdims=True), crops.shape)
    import cv2

    sigma = crops.shape[1] / 8
    return np.stack([cv2.GaussianBlur(c, (0, 0), sigma) for c in crops.astype(np.float32)])


def _predict(model, x: np.ndarray, batch_size: int) -> np.ndarray:
    return np.concatenate([np.asarray(model(x[i:i + batch_size, ..., None], training=False))
                           for i in range(0, len(x), batch_size)]).astype(np.float64)


def deletion_test(model, images: np.ndarray, heatmaps: np.ndarray,
                  class_idx: int | np.ndarray | None = None,
                  fractions: Sequence[float] = DELETION_FRACTIONS, fill: str = "mean",
                  grid: tuple[int, int] | None = None, random_orders: int = 3,
                  n_boot: int = 1000, seed: int = 0, batch_size: int = 256) -> DeletionTest:
    """Hide the top `fractions` of the pixels the model sees, ranked by `heatmaps`, by a
    uniform map and by a centre prior, and record the drop of the explained class's
    probability (module docstring).

    Args:
        model: a classifier of the input contract (called on float32 (n, S, S, 1)).
        images: uint8 (N, H, W) faces; heatmaps: (N, H, W) maps aligned with them (as
            :class:`fer_study.gradcam.GradCAM` returns them; models smaller than the face see,
            and are tested on, its centre S x S).
        class_idx: the class to follow: None = each face's predicted class, an int, or one
            per face (the class the maps explain).
        fill: "mean" (the face's mean grey) or "blur" (a Gaussian blur of the face).
        grid: the Grad-CAM feature grid (h, w): the uniform map's ties are broken by cells of
            this size; None = single pixels.
        random_orders: random tie-break orders the uniform ranking is averaged over.
    """
    images, heatmaps = np.asarray(images), np.asarray(heatmaps, np.float32)
    if images.ndim != 3 or heatmaps.shape != images.shape:
        raise ValueError(f"images (N, H, W) and heatmaps of the same shape needed, got "
                         f"{images.shape} and {heatmaps.shape}")
    if fill not in ("mean", "blur"):
        raise ValueError(f"fill must be 'mean' or 'blur', got {fill!r}")
    if not fractions or not all(0 < f < 1 for f in fractions):
        raise ValueError(f"fractions must lie in (0, 1), got {fractions!r}")
    s = model_input_size(model)
    if images.shape[1:] != (s, s):  # the centre the model sees (GradCAM's frame convention)
        images, heatmaps = center_crop(images, s), center_crop(heatmaps, s)
    n, pixels = len(images), s * s
    crops = images.astype(np.float32)
    base = _predict(model, crops, batch_size)
    if class_idx is None:
        cls = base.argmax(axis=1)
    else:
        cls = np.broadcast_to(np.asarray(class_idx, np.int64), (n,)).copy()
        if cls.min() < 0 or cls.max() >= NUM_CLASSES:
            raise ValueError(f"class_idx must be in 0..{NUM_CLASSES - 1}")
    rows = np.arange(n)
    base_p = base[rows, cls]
    filled = _fill(crops, fill)
    rng = np.random.default_rng(seed)

    def ties() -> np.ndarray:
        return _random_maps(n, s, grid or (s, s), rng).reshape(n, -1)

    rankings = {GRADCAM: [_order(heatmaps.reshape(n, -1), ties())],
                # a uniform map: every pixel ties, so the order is the random cells'
                UNIFORM: [_order(np.zeros((n, pixels), np.float32), ties())
                          for _ in range(random_orders)],
                CENTRE: [_order(np.broadcast_to(centre_prior(s).ravel(), (n, pixels)), ties())]}
    drops = {}
    for name, orders in rankings.items():
        d = np.zeros((n, len(fractions)))
        for order in orders:
            for j, f in enumerate(fractions):
                hide = np.zeros((n, pixels), bool)
                hide[rows[:, None], order[:, :max(1, round(f * pixels))]] = True
                x = np.where(hide.reshape(n, s, s), filled, crops)
                d[:, j] += base_p - _predict(model, x, batch_size)[rows, cls]
        drops[name] = d / len(orders)
    return DeletionTest(tuple(float(f) for f in fractions), fill, cls, base_p, drops,
                        n_boot, seed)
