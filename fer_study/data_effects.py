"""FER2013's known data problems, measured on a model's PrivateTest predictions.

- Leakage: PrivateTest faces whose exact pixels also appear in Training (counted as distinct
  test images, not as pairs); accuracy with and without them.
- Label noise: accuracy against the FER+ crowd majority, and on the faces where FER+ agrees
  with the FER2013 label.
- Non-faces: rows FER+ marks as not a face (no image name, or "NF" as the top vote); how many
  per split and how the model does on them.

:func:`data_counts` is the part that needs no model (notebook 01 shows it); :func:`data_effects`
measures one model's predictions. The command that writes ``results/data_effects.json`` is
:mod:`fer_study.data_effects_report`.
"""

from __future__ import annotations

import hashlib

import numpy as np

from fer_study.data import Dataset, FerPlusVotes
from fer_study.stats import bootstrap_ci

FIT, REPORT = "Training", "PrivateTest"


def leaked_rows(ds: Dataset, split: str = REPORT, fit: str = FIT) -> np.ndarray:
    """Bool mask over `split`'s rows: the image's exact pixels also occur in `fit`."""
    def key(im: np.ndarray) -> bytes:
        return hashlib.blake2b(im.tobytes(), digest_size=16).digest()

    seen = {key(im) for im in ds.images[ds.mask(fit)]}
    return np.array([key(im) in seen for im in ds.images[ds.mask(split)]], dtype=bool)


def data_counts(ds: Dataset, votes: FerPlusVotes | None = None, fit: str = FIT) -> dict:
    """The model-free counts: per test split, how many distinct test images also occur in
    `fit` (exact pixels); with FER+ votes, how often the FER+ majority agrees with the FER2013
    label and how many rows FER+ calls non-faces, per split."""
    tests = [s for s in ds.splits if s != fit]
    out: dict = {"leaked": {}, "ferplus": None}
    for s in tests:
        leak = leaked_rows(ds, s, fit)
        out["leaked"][s] = {"test_images": int(len(leak)), "also_in_training": int(leak.sum())}
    if votes is None:
        return out
    if len(votes.keep) != len(ds):
        raise ValueError(f"FER+ rows ({len(votes.keep)}) do not line up with the data "
                         f"({len(ds)})")
    named = votes.named if votes.named is not None else np.ones(len(ds), bool)
    top_nf = votes.top_nf if votes.top_nf is not None else np.zeros(len(ds), bool)
    agreement, nonfaces = {}, {}
    for s in ds.splits:
        m = ds.mask(s)
        keep = votes.keep[m]
        agree = int((votes.majority[m][keep] == ds.labels[m][keep]).sum())
        agreement[s] = {"rows_with_ferplus_label": int(keep.sum()), "agreeing": agree,
                        "agreement": round(agree / keep.sum(), 4) if keep.any() else None}
        nonfaces[s] = {"nonfaces": int(votes.nonface[m].sum()),
                       "no_image_name": int((~named[m]).sum()),
                       "nf_top_vote": int((named[m] & top_nf[m]).sum())}
    out["ferplus"] = {"agreement": agreement, "nonfaces": nonfaces}
    return out


def _acc(y: np.ndarray, p: np.ndarray) -> dict:
    if len(y) == 0:
        return {"n": 0, "accuracy": None, "ci95": None}
    ci = bootstrap_ci(y, p)
    return {"n": int(len(y)), "accuracy": round(ci["value"], 4),
            "ci95": [round(ci["low"], 4), round(ci["high"], 4)]}


def data_effects(ds: Dataset, preds: np.ndarray, votes: FerPlusVotes | None = None,
                 split: str = REPORT) -> dict:
    """The table of data effects for one model's predicted labels on `split`."""
    y = ds.labels[ds.mask(split)]
    preds = np.asarray(preds)
    if preds.shape != y.shape:
        raise ValueError(f"need one predicted label per {split} row ({len(y)}), got "
                         f"{preds.shape}")
    leak = leaked_rows(ds, split)
    out: dict = {
        "split": split,
        "all": _acc(y, preds),
        "leakage": {"test_images_also_in_training": int(leak.sum()),
                    "without_them": _acc(y[~leak], preds[~leak]),
                    "on_them": _acc(y[leak], preds[leak])},
    }
    if votes is None:
        out["ferplus"] = None
        return out
    m = ds.mask(split)
    keep, major = votes.keep[m], votes.majority[m]
    agree = keep & (major == y)
    nonface = votes.nonface
    out["ferplus"] = {
        "rows_with_ferplus_label": int(keep.sum()),
        "against_ferplus_majority": _acc(major[keep], preds[keep]),
        "where_ferplus_agrees_with_fer2013": _acc(y[agree], preds[agree]),
        "where_ferplus_disagrees": _acc(y[keep & ~agree], preds[keep & ~agree]),
        "nonfaces_per_split": {s: int(nonface[ds.mask(s)].sum()) for s in ds.splits},
        "on_nonfaces": _acc(y[nonface[m]], preds[nonface[m]]),
        "without_nonfaces": _acc(y[~nonface[m]], preds[~nonface[m]]),
    }
    return out
