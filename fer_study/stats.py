"""Uncertainty of test-set figures: bootstrap intervals, paired comparisons, McNemar's test.

PrivateTest has 3,589 faces, so an accuracy is uncertain by about +/-1.6 points (95%); two
models a point apart on it may not differ at all. Every headline figure carries its interval,
and a comparison of two models on the same faces uses a paired test, so a tie is called a tie.
"""

from __future__ import annotations

import math

import numpy as np
from sklearn.metrics import f1_score

from fer_study.labels import NUM_CLASSES


def _accuracy(y: np.ndarray, p: np.ndarray) -> float:
    return float((y == p).mean())


def _macro_f1(y: np.ndarray, p: np.ndarray) -> float:
    return float(f1_score(y, p, labels=range(NUM_CLASSES), average="macro", zero_division=0))


METRICS = {"accuracy": _accuracy, "macro_f1": _macro_f1}


def bootstrap_ci(labels: np.ndarray, preds: np.ndarray, metric: str = "accuracy",
                 n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> dict:
    """Percentile bootstrap interval of `metric` over faces resampled with replacement."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {sorted(METRICS)}, got {metric!r}")
    y, p = np.asarray(labels), np.asarray(preds)
    if y.shape != p.shape or y.ndim != 1 or len(y) == 0:
        raise ValueError(f"labels and predictions must be equal-length 1-D, got {y.shape} "
                         f"and {p.shape}")
    f = METRICS[metric]
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(y), size=(n_boot, len(y)))
    if metric == "accuracy":  # vectorised: the same numbers as calling f per resample
        stats = (y[idx] == p[idx]).mean(axis=1)
    else:
        stats = np.array([f(y[i], p[i]) for i in idx])
    lo, hi = np.quantile(stats, [(1 - level) / 2, (1 + level) / 2])
    return {"value": f(y, p), "low": float(lo), "high": float(hi), "level": level,
            "n_boot": n_boot}


def paired_bootstrap(labels: np.ndarray, preds_a: np.ndarray, preds_b: np.ndarray,
                     metric: str = "accuracy", n_boot: int = 1000, level: float = 0.95,
                     seed: int = 0) -> dict:
    """Interval of metric(a) - metric(b) on the same resampled faces."""
    y, a, b = map(np.asarray, (labels, preds_a, preds_b))
    f = METRICS[metric]
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(y), size=(n_boot, len(y)))
    if metric == "accuracy":
        diffs = (y[idx] == a[idx]).mean(1) - (y[idx] == b[idx]).mean(1)
    else:
        diffs = np.array([f(y[i], a[i]) - f(y[i], b[i]) for i in idx])
    lo, hi = np.quantile(diffs, [(1 - level) / 2, (1 + level) / 2])
    return {"difference": f(y, a) - f(y, b), "low": float(lo), "high": float(hi),
            "level": level, "n_boot": n_boot}


def mcnemar(labels: np.ndarray, preds_a: np.ndarray, preds_b: np.ndarray) -> dict:
    """Exact McNemar test on the faces where exactly one of two models is right."""
    y, a, b = map(np.asarray, (labels, preds_a, preds_b))
    ra, rb = a == y, b == y
    only_a, only_b = int((ra & ~rb).sum()), int((~ra & rb).sum())
    n = only_a + only_b
    if n == 0:
        p = 1.0
    else:  # two-sided binomial test of only_a ~ Bin(n, 1/2)
        k = min(only_a, only_b)
        tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
        p = min(1.0, 2 * tail)
    return {"only_a_right": only_a, "only_b_right": only_b, "p_value": p}


def verdict(p_value: float, alpha: float = 0.05) -> str:
    return "differ" if p_value < alpha else "tie (no significant difference)"


def bootstrap_mean_ci(values: np.ndarray, n_boot: int = 1000, level: float = 0.95,
                      seed: int = 0) -> dict:
    """Percentile bootstrap interval of the mean of per-face values, resampling faces with
    replacement (as :func:`bootstrap_ci`); for per-face paired differences of two methods,
    the interval of their paired comparison."""
    v = np.asarray(values, np.float64)
    if v.ndim != 1 or len(v) == 0 or not np.isfinite(v).all():
        raise ValueError(f"values must be a non-empty finite 1-D array, got shape {v.shape}")
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), size=(n_boot, len(v)))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return {"value": float(v.mean()), "low": float(lo), "high": float(hi), "level": level,
            "n_boot": n_boot}
