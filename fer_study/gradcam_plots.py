"""Figures of the Grad-CAM study (notebook 05): class-mean maps, correct and wrong examples,
the same faces under several maps, and the deletion test's curves. Every heat overlay has a
colour bar, and a panel with nothing to show says why instead of staying blank. Each function
returns a matplotlib Figure (shown inline by Jupyter, saved by ``StudyNotebook.savefig``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np

from fer_study.gradcam_analysis import DeletionTest
from fer_study.labels import EMOTIONS, FACE_REGIONS, NUM_CLASSES

__all__ = ["class_means", "deletion_curves", "examples", "rows"]


def _overlay(image: np.ndarray, heatmap: np.ndarray) -> np.ndarray:
    from fer_study.gradcam import overlay  # Keras loads with it: only when drawing

    return overlay(image, heatmap)


def _title(fig, text: str | None) -> None:
    if text:
        fig.suptitle(text, fontsize=11)

def _heat_colorbar(fig, axes, label: str = "Grad-CAM heat (each map scaled to its max)",
                   cmap: str = "jet") -> None:
    """One colour scale for every heat overlay of a figure (0 = no positive evidence)."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    cb = fig.colorbar(ScalarMappable(Normalize(0, 1), cmap), ax=np.ravel(axes).tolist(),
                      fraction=0.025, pad=0.02)
    cb.set_label(label, fontsize=8)
    cb.ax.tick_params(labelsize=7)


def _note(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=7,
            color="dimgrey", wrap=True)


def _outline_regions(ax, shape: tuple[int, int]) -> None:
    from matplotlib.patches import Rectangle

    h, w = shape
    for name, (r0, r1, c0, c1) in FACE_REGIONS.items():
        ax.add_patch(Rectangle((c0 * w - 0.5, r0 * h - 0.5), (c1 - c0) * w, (r1 - r0) * h,
                               fill=False, lw=0.8, ls="--", ec="white", alpha=0.8))
        ax.text(c0 * w, r0 * h - 1, name, color="white", fontsize=6, va="bottom")


def class_means(means: np.ndarray, counts: np.ndarray, mean_faces: np.ndarray | None = None,
                correct: np.ndarray | None = None,
                title: str = "Mean Grad-CAM per true class") -> plt.Figure:
    """One panel per class: the mean heatmap over the class's mean face, regions outlined.
    A panel with nothing to show says why (no faces of the class in the sample, or every map
    of it all zero: no positive evidence); `correct` (per-class counts) notes a class the
    model never got right."""
    fig, axes = plt.subplots(1, NUM_CLASSES, figsize=(2.0 * NUM_CLASSES + 0.8, 2.6),
                             layout="constrained")
    for c, ax in enumerate(axes):
        ax.axis("off")
        n = int(counts[c])
        right = f", {int(correct[c])} right" if correct is not None else ""
        ax.set_title(f"{EMOTIONS[c]} (n={n}{right})", fontsize=9)
        if n == 0:
            _note(ax, f"no {EMOTIONS[c]} faces\nin this sample")
            continue
        if not means[c].max() > 0:
            _note(ax, f"all {n} maps are zero:\nno positive evidence\nfor {EMOTIONS[c]} "
                      f"anywhere")
            continue
        face = mean_faces[c] if mean_faces is not None else np.full(means.shape[1:], 128.0)
        ax.imshow(_overlay(face, means[c] / means[c].max()))
        _outline_regions(ax, means.shape[1:])
        if correct is not None and correct[c] == 0:
            ax.text(0.5, -0.04, "none classified correctly", transform=ax.transAxes,
                    ha="center", va="top", fontsize=7, color="red")
    _title(fig, title)
    _heat_colorbar(fig, axes, "mean heat (each panel scaled to its max)")
    return fig


def examples(images: np.ndarray, heatmaps: np.ndarray, labels: np.ndarray,
             probs: np.ndarray, picked: Mapping[int, Mapping[str, list[int]]],
             per_class: int = 2, title: str | None = None) -> plt.Figure:
    """Rows = true classes; columns = `per_class` correct then `per_class` wrong examples,
    each titled true -> predicted (confidence); a missing example is a note, not a blank.
    `picked`: :func:`fer_study.gradcam_analysis.select_examples`."""
    cols = 2 * per_class
    fig, axes = plt.subplots(NUM_CLASSES, cols, figsize=(1.9 * cols + 0.8, 2.0 * NUM_CLASSES),
                             squeeze=False, layout="constrained")
    for c in range(NUM_CLASSES):
        picks = [("correct", i) for i in picked[c]["correct"][:per_class]]
        picks += [("correct", None)] * (per_class - len(picks))
        picks += [("wrong", i) for i in picked[c]["wrong"][:per_class]]
        picks += [("wrong", None)] * (cols - len(picks))
        for j, (kind, i) in enumerate(picks):
            ax = axes[c, j]
            ax.axis("off")
            if i is None:
                first = j in (0, per_class)  # the first slot of its kind: none at all
                what = "correctly classified" if kind == "correct" else "misclassified"
                _note(ax, f"no {'' if first else 'other '}{what}\n{EMOTIONS[c]} face\n"
                          f"in this sample")
                continue
            p = int(probs[i].argmax())
            ax.imshow(_overlay(images[i], heatmaps[i]))
            ax.set_title(f"{EMOTIONS[labels[i]][:3]}->{EMOTIONS[p][:3]} {probs[i, p]:.2f}",
                         fontsize=8, color="green" if kind == "correct" else "red")
        axes[c, 0].text(-0.06, 0.5, EMOTIONS[c], transform=axes[c, 0].transAxes, rotation=90,
                        va="center", ha="right", fontsize=9)
    _title(fig, title or f"Grad-CAM: {per_class} most confident correct (green) and wrong "
                         f"(red) per class")
    _heat_colorbar(fig, axes, "heat of the predicted class (each map scaled to its max)")
    return fig


def rows(images: np.ndarray, maps: Mapping[str, np.ndarray],
         captions: Sequence[str] | None = None, title: str | None = None) -> plt.Figure:
    """The same faces (columns) under several sets of maps (rows, e.g. two models, or this
    package vs tf-keras-vis), each row named by its key; `captions` title the columns."""
    n = len(images)
    fig, axes = plt.subplots(len(maps), n, figsize=(1.8 * n + 1.2, 2.1 * len(maps)),
                             squeeze=False, layout="constrained")
    for row, (name, m) in enumerate(maps.items()):
        for j in range(n):
            ax = axes[row, j]
            ax.imshow(_overlay(images[j], m[j]))
            ax.set_xticks([])
            ax.set_yticks([])
            if captions is not None and row == 0:
                ax.set_title(captions[j], fontsize=8)
        axes[row, 0].set_ylabel(name, fontsize=8)
    _title(fig, title)
    _heat_colorbar(fig, axes)
    return fig


def deletion_curves(tests: Mapping[str, DeletionTest], title: str | None = (
        "Deletion test: hide the top pixels of each map")) -> plt.Figure:
    """Per model (panel): mean drop of the explained class's probability against the share
    of the face hidden, one line per map ranking; the legend gives each ranking's mean drop
    with its bootstrap 95% interval."""
    styles = {"Grad-CAM": ("#c44e52", "o"), "uniform": ("#4c72b0", "s"),
              "centre prior": ("#8c8c8c", "^")}
    fig, axes = plt.subplots(1, len(tests), figsize=(4.6 * len(tests), 3.4), squeeze=False)
    for ax, (name, t) in zip(axes[0], tests.items()):
        ci = {r["map"]: r for r in t.drop_rows()}
        xs = [0.0, *t.fractions]
        for ranking, d in t.drops.items():
            colour, marker = styles.get(ranking, (None, "o"))
            r = ci[ranking]
            ax.plot([100 * x for x in xs], [0.0, *d.mean(axis=0)], marker=marker, color=colour,
                    label=f"{ranking}: {r['mean drop']:.3f} [{r['low']:.3f}, {r['high']:.3f}]")
        ax.axhline(0, color="black", lw=0.6)
        ax.set_xlabel("share of the face hidden (%)")
        ax.set_ylabel("drop in P(explained class)")
        ax.set_title(f"{name} (n={len(t.base_prob)}, fill: {t.fill})", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, title="mean drop [95% CI]", title_fontsize=7)
    _title(fig, title)
    fig.tight_layout()
    return fig
