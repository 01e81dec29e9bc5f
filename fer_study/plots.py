"""Figures shared by the study notebooks. Each function returns a matplotlib Figure (shown
inline by Jupyter, saved by ``StudyNotebook.savefig``); none of them saves or shows itself."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator, NullFormatter

from fer_study.labels import CHANCE_ACCURACY, EMOTIONS, NUM_CLASSES

SPLIT_COLOURS = {"Training": "#4c72b0", "PublicTest": "#dd8452", "PrivateTest": "#55a868",
                 "Validation": "#dd8452", "Test": "#55a868"}
PHASE_COLOURS = {"frozen": "#dbe9f6", "fine_tune": "#fde8d0", "train": "#ffffff"}


def _title(fig, text: str | None) -> None:
    if text:
        fig.suptitle(text, fontsize=11)


# --------------------------------------------------------------------------- data

def class_distribution(ds, title: str | None = "Images per class and split") -> plt.Figure:
    """Counts (left) and within-split shares (right) of each class, one bar group per split."""
    splits = ds.splits
    counts = np.array([[ds.class_counts(s)[e] for e in EMOTIONS] for s in splits], float)
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    width = 0.8 / len(splits)
    x = np.arange(NUM_CLASSES)
    for k, s in enumerate(splits):
        for ax, vals in zip(axes, (counts[k], counts[k] / max(counts[k].sum(), 1))):
            ax.bar(x + (k - (len(splits) - 1) / 2) * width, vals, width, label=s,
                   color=SPLIT_COLOURS.get(s))
    axes[0].set_ylabel("images")
    axes[1].set_ylabel("share of split")
    axes[1].axhline(CHANCE_ACCURACY, ls="--", c="grey", lw=0.8, label="uniform (1/7)")
    for ax in axes:
        ax.set_xticks(x, EMOTIONS, rotation=30)
        ax.grid(axis="y", alpha=0.3)
    axes[1].set_ylim(0, max(axes[1].get_ylim()[1], CHANCE_ACCURACY) * 1.3)
    axes[1].legend(fontsize=8, loc="upper right", ncol=2)
    _title(fig, title)
    fig.tight_layout()
    return fig


def sample_grid(ds, per_class: int = 8, split: str | None = None, seed: int = 0,
                title: str | None = "Random examples per class") -> plt.Figure:
    """`per_class` random images of each class (rows)."""
    rng = np.random.default_rng(seed)
    part = ds.subset(split) if split else ds
    fig, axes = plt.subplots(NUM_CLASSES, per_class,
                             figsize=(per_class * 0.9, NUM_CLASSES * 0.95), squeeze=False)
    for c, name in enumerate(EMOTIONS):
        idx = np.flatnonzero(part.labels == c)
        pick = rng.choice(idx, size=min(per_class, len(idx)), replace=False) if len(idx) else []
        for j in range(per_class):
            ax = axes[c, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if j < len(pick):
                ax.imshow(part.images[pick[j]], cmap="gray", vmin=0, vmax=255)
            else:
                ax.axis("off")
        axes[c, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
    _title(fig, title)
    fig.tight_layout()
    return fig


def pixel_statistics(ds) -> dict:
    """Per-image brightness (mean pixel) and contrast (pixel std), summarised per class."""
    flat = ds.images.reshape(len(ds), -1).astype(np.float32)
    bright, contrast = flat.mean(axis=1), flat.std(axis=1)
    out = {}
    for c, name in enumerate(EMOTIONS):
        m = ds.labels == c
        out[name] = {"images": int(m.sum()),
                     "mean_brightness": float(bright[m].mean()) if m.any() else None,
                     "mean_contrast": float(contrast[m].mean()) if m.any() else None}
    out["_per_image"] = {"brightness": bright, "contrast": contrast}
    return out


def brightness_contrast(ds, title: str | None = "Brightness and contrast per class"
                        ) -> plt.Figure:
    """Histograms of per-image mean (brightness) and standard deviation (contrast), by class."""
    st = pixel_statistics(ds)["_per_image"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.4))
    for ax, key, bins in ((axes[0], "brightness", np.linspace(0, 255, 41)),
                          (axes[1], "contrast", np.linspace(0, 128, 41))):
        for c, name in enumerate(EMOTIONS):
            v = st[key][ds.labels == c]
            if len(v):
                ax.hist(v, bins=bins, histtype="step", density=True, label=name, lw=1.2)
        ax.set_xlabel(f"per-image {'mean' if key == 'brightness' else 'std'} of pixels")
        ax.set_title(key)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("density")
    axes[1].legend(fontsize=7, ncol=2)
    _title(fig, title)
    fig.tight_layout()
    return fig


def mean_faces(ds, title: str | None = "Mean face per class") -> plt.Figure:
    fig, axes = plt.subplots(1, NUM_CLASSES, figsize=(NUM_CLASSES * 1.45, 1.9))
    for c, (ax, name) in enumerate(zip(axes, EMOTIONS)):
        m = ds.labels == c
        if m.any():
            ax.imshow(ds.images[m].mean(axis=0), cmap="gray", vmin=0, vmax=255)
        ax.set_title(f"{name}\n(n={int(m.sum())})", fontsize=8)
        ax.axis("off")
    _title(fig, title)
    fig.tight_layout()
    return fig


def duplicate_pairs(ds, pairs: Sequence[tuple[int, int]], n: int = 6,
                    title: str | None = None) -> plt.Figure:
    """The first `n` pairs side by side, each with its split and label."""
    shown = list(pairs)[:n]
    if not shown:
        fig, ax = plt.subplots(figsize=(4, 1))
        ax.text(0.5, 0.5, "no pairs found", ha="center", va="center")
        ax.axis("off")
        _title(fig, title)
        return fig
    fig, axes = plt.subplots(2, len(shown), figsize=(1.7 * len(shown), 4.6), squeeze=False)
    for j, (a, b) in enumerate(shown):
        for r, i in enumerate((a, b)):
            ax = axes[r, j]
            ax.imshow(ds.images[i], cmap="gray", vmin=0, vmax=255)
            ax.set_title(f"#{i}\n{ds.usage[i]}\n{EMOTIONS[ds.labels[i]]}", fontsize=7)
            ax.axis("off")
    _title(fig, title)
    fig.tight_layout(h_pad=1.5)
    return fig


# --------------------------------------------------------------------------- one model

def confusion(cm: Sequence[Sequence[float]], title: str | None = None, normalise: bool = True,
              ax=None, xlabel: str = "predicted", ylabel: str = "true",
              labels: Sequence[str] = EMOTIONS, cbar: bool = True) -> plt.Figure:
    """A confusion matrix heatmap, row-normalised (recall on the diagonal) by default."""
    m = np.asarray(cm, dtype=float)
    if normalise:
        with np.errstate(invalid="ignore", divide="ignore"):
            m = np.nan_to_num(m / m.sum(axis=1, keepdims=True))
    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=(5.2, 4.4))
    else:
        fig = ax.figure
    im = ax.imshow(m, cmap="Blues", vmin=0, vmax=1 if normalise else None)
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            v = m[i, j]
            ax.text(j, i, f"{v:.2f}" if normalise else f"{int(v)}", ha="center", va="center",
                    fontsize=7, color="white" if v > (0.6 if normalise else m.max() * 0.6)
                    else "black")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    if own:
        if cbar:
            fig.colorbar(im, ax=ax, fraction=0.046)
        fig.tight_layout()
    return fig


def learning_curves(history, title: str | None = None, selection: str = "PublicTest"
                    ) -> plt.Figure:
    """Loss and accuracy per epoch (training vs selection split); training phases shaded.

    `history`: history.csv rows (list of dicts or a DataFrame) with epoch, phase, loss,
    accuracy, val_loss, val_accuracy."""
    import pandas as pd

    h = pd.DataFrame(history)
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    if h.empty:
        for ax in axes:
            ax.text(0.5, 0.5, "no epochs recorded", ha="center", va="center")
        _title(fig, title)
        return fig
    h = h.astype({c: float for c in ("loss", "accuracy", "val_loss", "val_accuracy")
                  if c in h})
    epochs = h["epoch"].astype(int).to_numpy()
    for ax, key in zip(axes, ("loss", "accuracy")):
        if "phase" in h and set(h["phase"]) != {"train"}:  # scratch runs have one phase
            phases = h["phase"].to_numpy()
            start = 0
            for i in range(1, len(phases) + 1):
                if i == len(phases) or phases[i] != phases[start]:
                    ax.axvspan(epochs[start] - 0.5, epochs[i - 1] + 0.5,
                               color=PHASE_COLOURS.get(phases[start], "#eeeeee"), zorder=0,
                               label=f"phase: {phases[start]}")
                    start = i
        ax.plot(epochs, h[key], marker="o", ms=3, label="Training (augmented)")
        if f"val_{key}" in h:
            ax.plot(epochs, h[f"val_{key}"], marker="o", ms=3, label=f"{selection} (selection)")
        if key == "accuracy":
            ax.axhline(CHANCE_ACCURACY, ls="--", c="grey", lw=0.8, label="chance")
            ax.set_ylim(0, 1)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(key)
        ax.grid(alpha=0.3)
    handles, labels = axes[1].get_legend_handles_labels()
    uniq = dict(zip(labels, handles))
    axes[1].legend(uniq.values(), uniq.keys(), fontsize=8)
    _title(fig, title)
    fig.tight_layout()
    return fig


def runs_learning_curves(histories: Mapping[str, Any], selection: str = "PublicTest",
                         title: str | None = None) -> plt.Figure:
    """Several runs on one figure: selection accuracy (left) and training loss (right) per
    epoch. `histories`: {run name: history.csv rows (list of dicts or a DataFrame)}."""
    import pandas as pd

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for name, rows in histories.items():
        h = pd.DataFrame(rows)
        if h.empty:
            continue
        e = h["epoch"].astype(int).to_numpy()
        axes[0].plot(e, h["val_accuracy"].astype(float), lw=1.4, label=name)
        axes[1].plot(e, h["loss"].astype(float), lw=1.4, label=name)
    axes[0].axhline(CHANCE_ACCURACY, ls="--", c="grey", lw=0.8, label="chance")
    axes[0].set_title(f"{selection} accuracy (selection)")
    axes[1].set_title("training loss (augmented, smoothed labels where used)")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="lower right")
    _title(fig, title)
    fig.tight_layout()
    return fig


def per_class_bars(per_class: Mapping[str, Mapping[str, Mapping]], metric: str = "f1",
                   title: str | None = None) -> plt.Figure:
    """`metric` per class, one bar per split: per_class = {split: {class: {metric: v}}}."""
    splits = list(per_class)
    fig, ax = plt.subplots(figsize=(9, 3.4))
    width = 0.8 / max(len(splits), 1)
    x = np.arange(NUM_CLASSES)
    for k, s in enumerate(splits):
        vals = [per_class[s][e][metric] for e in EMOTIONS]
        ax.bar(x + (k - (len(splits) - 1) / 2) * width, vals, width, label=s,
               color=SPLIT_COLOURS.get(s))
    ax.set_xticks(x, EMOTIONS)
    ax.set_ylim(0, 1)
    ax.set_ylabel(metric)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title or f"Per-class {metric}", fontsize=10)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- comparison

def _reference_lines(ax, human: float | None, vertical: bool = False) -> None:
    line = ax.axvline if vertical else ax.axhline
    line(CHANCE_ACCURACY, ls="--", c="grey", lw=1, label=f"chance ({CHANCE_ACCURACY:.3f})")
    if human is not None:
        line(human, ls=":", c="#b00020", lw=1.2, label=f"human ~{human:.2f} (Goodfellow 2013)")


def accuracy_bars(rows: Sequence[Mapping], keys: Sequence[str], human: float | None = 0.65,
                  title: str | None = "Accuracy by model") -> plt.Figure:
    """Horizontal bars of each accuracy column in `keys`, one group per model (ok rows)."""
    ok = [r for r in rows if r.get("status") == "ok"]
    fig, ax = plt.subplots(figsize=(9, 0.55 * max(len(ok), 1) * len(keys) / 2 + 1.6))
    y = np.arange(len(ok))
    h = 0.8 / len(keys)
    colours = ["#4c72b0", "#dd8452", "#55a868", "#8172b3"]
    for k, key in enumerate(keys):
        vals = [r.get(key) or 0 for r in ok]
        bars = ax.barh(y + (k - (len(keys) - 1) / 2) * h, vals, h, label=key,
                       color=colours[k % len(colours)])
        ax.bar_label(bars, fmt="%.3f", fontsize=7, padding=2)
    ax.set_yticks(y, [r["model"] for r in ok])
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("accuracy")
    _reference_lines(ax, human, vertical=True)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    _title(fig, title)
    fig.tight_layout()
    return fig


def f1_heatmap(rows: Sequence[Mapping], title: str | None = "Per-class F1") -> plt.Figure:
    """Models (rows) x classes (columns) F1 heatmap; rows = [{"model": m, class: f1, ...}]."""
    m = np.array([[r.get(e) if r.get(e) is not None else np.nan for e in EMOTIONS]
                  for r in rows], dtype=float)
    fig, ax = plt.subplots(figsize=(8, 0.45 * max(len(rows), 1) + 1.6))
    ax.imshow(m, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            if not np.isnan(m[i, j]):
                ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=8,
                        color="black" if m[i, j] > 0.6 else "white")
    ax.set_xticks(range(NUM_CLASSES), EMOTIONS)
    ax.set_yticks(range(len(rows)), [r["model"] for r in rows])
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def confusions_side_by_side(cms: Mapping[str, Sequence[Sequence[float]]], ncols: int = 3,
                            title: str | None = None) -> plt.Figure:
    names = list(cms)
    ncols = max(1, min(ncols, len(names)))
    nrows = max(1, -(-len(names) // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.3 * ncols, 3.9 * nrows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        confusion(cms[name], title=name, ax=ax)
    for ax in axes.flat[len(names):]:
        ax.axis("off")
    _title(fig, title)
    fig.tight_layout()
    return fig


def generalisation_gap(rows: Sequence[Mapping], train_key: str, val_key: str,
                       title: str | None = "Training vs selection accuracy") -> plt.Figure:
    """A dumbbell per model: training accuracy to selection accuracy, the gap annotated."""
    ok = [r for r in rows if r.get("status") == "ok"]
    fig, ax = plt.subplots(figsize=(8, 0.5 * max(len(ok), 1) + 1.5))
    for i, r in enumerate(ok):
        a, b = r.get(train_key) or 0, r.get(val_key) or 0
        ax.plot([a, b], [i, i], c="grey", lw=2, zorder=1)
        ax.scatter([a], [i], c="#4c72b0", zorder=2, label=train_key if i == 0 else None)
        ax.scatter([b], [i], c="#dd8452", zorder=2, label=val_key if i == 0 else None)
        ax.annotate(f"gap {a - b:+.3f}", (max(a, b), i), xytext=(6, -3),
                    textcoords="offset points", fontsize=8)
    ax.set_yticks(range(len(ok)), [r["model"] for r in ok])
    ax.invert_yaxis()
    ax.set_xlim(0, 1.1)
    ax.set_xlabel("accuracy")
    _reference_lines(ax, None, vertical=True)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    _title(fig, title)
    fig.tight_layout()
    return fig


def cost_vs_accuracy(rows: Sequence[Mapping], acc_key: str,
                     cost_key: str = "CPU latency (ms/img)",
                     title: str | None = "Accuracy vs CPU latency") -> plt.Figure:
    """Accuracy against cost (log x, marker size ~ model size), readable at any range: the
    axes fit the points (with room for their labels), ticks are plain numbers at 1-2-5 steps,
    labels point inwards and are nudged apart vertically so they never overlap."""
    ok = [r for r in rows if r.get("status") == "ok" and r.get(cost_key)
          and r.get(acc_key) is not None]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    if not ok:
        ax.text(0.5, 0.5, "no finished runs with a cost", ha="center", va="center",
                transform=ax.transAxes)
        _title(fig, title)
        return fig
    xs = np.array([float(r[cost_key]) for r in ok])
    ys = np.array([float(r[acc_key]) for r in ok])
    for r, x, y in zip(ok, xs, ys):
        ax.scatter(x, y, s=30 + 8 * (r.get("size (MB)") or 0) ** 0.5, zorder=3)
    # x: log scale padded by a factor on each side (at least a 4x span, so one point or
    # close ones still sit inside a readable range)
    lo, hi = xs.min(), xs.max()
    pad = max((hi / lo) ** 0.12, (4 / (hi / lo)) ** 0.5, 1.15)
    ax.set_xscale("log")
    ax.set_xlim(lo / pad, hi * pad)
    decades = np.arange(np.floor(np.log10(lo / pad)), np.ceil(np.log10(hi * pad)) + 1)
    ticks: list[float] = []
    for mults in ((1, 2, 5), (1, 1.5, 2, 3, 4, 5, 6, 7, 8, 9)):  # finer when too few
        ticks = [m * 10 ** d for d in decades for m in mults
                 if lo / pad <= m * 10 ** d <= hi * pad]
        if len(ticks) >= 3:
            break
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    # labels: towards the centre of the axes, stacked apart when points are close in x
    span = np.log10(hi * pad) - np.log10(lo / pad)
    ylo, yhi = ys.min(), ys.max()
    step = 0.07 * max(yhi - ylo, 0.1)
    placed: list[tuple[float, float]] = []  # (log10 x, label y)
    for i in np.argsort(-ys):
        lx, ly = np.log10(xs[i]), ys[i]
        while any(abs(lx - px) < 0.35 * span and abs(ly - py) < step for px, py in placed):
            ly -= step
        placed.append((lx, ly))
        right = lx > np.log10(lo / pad) + span / 2
        name = str(ok[i]["model"])
        ax.annotate(f"{name}  " if right else f"  {name}", (xs[i], ys[i]),
                    xytext=(xs[i], ly), fontsize=8, va="center", ha="right" if right else "left",
                    arrowprops=None if ly == ys[i] else
                    {"arrowstyle": "-", "lw": 0.5, "color": "grey"})
    # y: the points and their labels with margins; the chance line only when inside
    low = min(ylo, min(py for _, py in placed))
    ax.set_ylim(max(0.0, low - step), min(1.0, yhi + step))
    if ax.get_ylim()[0] <= CHANCE_ACCURACY <= ax.get_ylim()[1]:
        ax.axhline(CHANCE_ACCURACY, ls="--", c="grey", lw=0.8, label="chance (1/7)")
        ax.legend(loc="lower right", fontsize=8)
    ax.set_xlabel(f"{cost_key} (log scale)")
    ax.set_ylabel(acc_key)
    ax.grid(alpha=0.3, which="major")
    _title(fig, title)
    fig.tight_layout()
    return fig


def reliability_diagram(report: dict):
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


def frame_grid(frames: Sequence[np.ndarray], titles: Sequence[str] | None = None,
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


# --------------------------------------------------------------------------- optimisation

def optimisation_tradeoff(rows: Sequence[Mapping], accuracy_key: str,
                          title: str | None = "Size, latency and accuracy of each variant"
                          ) -> plt.Figure:
    """Accuracy against file size (filled: gzip-compressed, hollow: raw) and against 1-thread
    single-face latency, one labelled point per variant (rows of
    :func:`fer_study.optimise.optimisation_table`)."""
    fig, (ax_size, ax_lat) = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for i, r in enumerate(rows):
        c = f"C{i % 10}"
        acc = r[accuracy_key]
        ax_size.scatter(r["size_kb"], acc, facecolors="none", edgecolors=c, s=45)
        ax_size.scatter(r["gzip_kb"], acc, color=c, s=45, label=r["variant"])
        ax_size.plot([r["gzip_kb"], r["size_kb"]], [acc, acc], color=c, lw=0.8, alpha=0.6)
        if r.get("latency_ms") is not None and np.isfinite(r["latency_ms"]):
            ax_lat.scatter(r["latency_ms"], acc, color=c, s=45)
    ax_size.set_xscale("log")
    ax_size.set_xlabel("file size, KB (filled: gzip, hollow: raw; log scale)")
    ax_lat.set_xlabel("latency per face, ms (1 thread, median)")
    ax_size.set_ylabel(accuracy_key)
    for ax in (ax_size, ax_lat):
        ax.grid(alpha=0.3)
    ax_size.legend(fontsize=7, loc="lower right")
    _title(fig, title)
    fig.tight_layout()
    return fig
