"""Metrics for a trained model: accuracy, top-2, F1s, per-class scores, confusion matrices,
calibration (ECE, temperature scaling), with optional flip / ten-crop test-time augmentation."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

from fer_study.labels import EMOTIONS, NUM_CLASSES
from fer_study.model_input import as_model_input, model_input_size, ten_crops

TTA_MODES = ("none", "flip", "tencrop")


def predict_probs(model, images: np.ndarray, tta: str = "none",
                  batch_size: int = 256) -> np.ndarray:
    """Class probabilities for uint8 (N, H, W) images under the model-input contract.

    tta: 'none' (centre crop when the model input is smaller than the image), 'flip'
    (average with the mirror image) or 'tencrop' (corners + centre, and their mirrors).
    """
    if tta not in TTA_MODES:
        raise ValueError(f"tta must be one of {TTA_MODES}, got {tta!r}")
    if images.ndim != 3:
        raise ValueError(f"images must be (N, H, W) grayscale, got shape {images.shape}")
    s = model_input_size(model)
    if tta == "tencrop" and s < images.shape[1]:
        views = [v[..., None] for v in ten_crops(images, s)]
    else:
        base = as_model_input(images, s)  # the centre crop of smaller models, see model_input
        views = [base, base[:, :, ::-1]] if tta != "none" else [base]
    probs = np.zeros((len(images), NUM_CLASSES), dtype=np.float64)
    for v in views:
        x = np.ascontiguousarray(v, dtype=np.float32)
        probs += model.predict(x, batch_size=batch_size, verbose=0)
    return (probs / len(views)).astype(np.float32)


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """ECE with equal-width confidence bins (Guo et al. 2017)."""
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0, 1, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            ece += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return float(ece)


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> dict:
    """Per-bin confidence, accuracy and count, for a reliability diagram."""
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    out = {"edges": edges.tolist(), "confidence": [], "accuracy": [], "count": []}
    for b in range(bins):
        m = idx == b
        out["count"].append(int(m.sum()))
        out["confidence"].append(float(conf[m].mean()) if m.any() else None)
        out["accuracy"].append(float(correct[m].mean()) if m.any() else None)
    return out


def fit_temperature(probs: np.ndarray, labels: np.ndarray) -> float:
    """The temperature T minimising NLL of softmax(log p / T) on a selection split."""
    from scipy.optimize import minimize_scalar

    logp = np.log(np.clip(probs, 1e-12, 1.0))

    def nll(t: float) -> float:
        z = logp / t
        z = z - z.max(axis=1, keepdims=True)
        logsm = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return float(-logsm[np.arange(len(labels)), labels].mean())

    return float(minimize_scalar(nll, bounds=(0.05, 20.0), method="bounded").x)


def apply_temperature(probs: np.ndarray, t: float) -> np.ndarray:
    z = np.log(np.clip(probs, 1e-12, 1.0)) / t
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def calibration_report(fit_probs: np.ndarray, fit_labels: np.ndarray, report_probs: np.ndarray,
                       report_labels: np.ndarray, bins: int = 15, fit_split: str = "PublicTest",
                       report_split: str = "PrivateTest") -> dict:
    """Temperature scaling fitted on `fit_split`, judged on `report_split`: T, ECE and NLL
    before/after and both reliability tables."""
    if fit_split == report_split:
        raise ValueError(f"the temperature must be fitted on another split than the one it is "
                         f"reported on (both {report_split!r})")
    t = fit_temperature(fit_probs, np.asarray(fit_labels))
    return temperature_report(report_probs, report_labels, t, bins, fit_split, report_split,
                              n_fit=len(fit_labels))


def temperature_report(report_probs: np.ndarray, report_labels: np.ndarray, t: float,
                       bins: int = 15, fit_split: str = "PublicTest",
                       report_split: str = "PrivateTest", n_fit: int | None = None) -> dict:
    """Calibration on `report_split` before and after a given temperature `t` (fitted
    elsewhere, e.g. the shipped model's): the keys of :func:`calibration_report`."""
    scaled = apply_temperature(report_probs, t)
    y = np.asarray(report_labels)

    def nll(p: np.ndarray) -> float:
        return float(-np.log(np.clip(p[np.arange(len(y)), y], 1e-12, 1.0)).mean())

    return {
        "temperature": float(t), "fit_split": fit_split, "report_split": report_split,
        "n_fit": n_fit, "n_report": int(len(y)), "bins": bins,
        "accuracy": float((report_probs.argmax(axis=1) == y).mean()),
        "ece_before": expected_calibration_error(report_probs, y, bins),
        "ece_after": expected_calibration_error(scaled, y, bins),
        "nll_before": nll(report_probs), "nll_after": nll(scaled),
        "mean_confidence_before": float(report_probs.max(axis=1).mean()),
        "mean_confidence_after": float(scaled.max(axis=1).mean()),
        "reliability_before": reliability(report_probs, y, bins),
        "reliability_after": reliability(scaled, y, bins),
    }


def metrics_from_probs(probs: np.ndarray, labels: np.ndarray) -> dict:
    """All headline and per-class metrics, JSON-ready."""
    labels = np.asarray(labels, dtype=np.int64)
    if len(probs) != len(labels) or len(labels) == 0:
        raise ValueError(f"need equal, non-zero numbers of predictions ({len(probs)}) and "
                         f"labels ({len(labels)})")
    pred = probs.argmax(axis=1)
    top2 = np.argsort(-probs, axis=1)[:, :2]
    cls = list(range(NUM_CLASSES))
    p, r, f, s = precision_recall_fscore_support(labels, pred, labels=cls, zero_division=0)
    cm = confusion_matrix(labels, pred, labels=cls)
    with np.errstate(invalid="ignore", divide="ignore"):
        cm_norm = np.nan_to_num(cm / cm.sum(axis=1, keepdims=True))
    nll = float(-np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, 1)).mean())
    return {
        "n": int(len(labels)),
        "accuracy": float((pred == labels).mean()),
        "top2_accuracy": float((top2 == labels[:, None]).any(axis=1).mean()),
        "macro_f1": float(f1_score(labels, pred, labels=cls, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(labels, pred, labels=cls, average="weighted",
                                      zero_division=0)),
        "ece": expected_calibration_error(probs, labels),
        "nll": nll,
        "per_class": {name: {"precision": float(p[i]), "recall": float(r[i]),
                             "f1": float(f[i]), "support": int(s[i])}
                      for i, name in enumerate(EMOTIONS)},
        "confusion_matrix": cm.tolist(),
        "confusion_matrix_normalised": np.round(cm_norm, 4).tolist(),
    }


def evaluate_model(model, images: np.ndarray, labels: np.ndarray, tta: str = "none") -> dict:
    probs = predict_probs(model, images, tta=tta)
    return {**metrics_from_probs(probs, labels), "tta": tta}
