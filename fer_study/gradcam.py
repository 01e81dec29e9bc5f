"""Grad-CAM (Selvaraju et al. 2017) for the project's classifiers.

The class score's gradient with respect to the last convolutional feature map A (h, w, C)
gives one weight per channel, alpha_c = mean over (h, w) of d score / d A_c; the map is
ReLU(sum_c alpha_c A_c), upsampled to the image and divided by its maximum, so every heatmap
lies in [0, 1] and 0 means "no positive evidence".

* The feature layer is found automatically: the last convolution with a 4-D output and more
  than one spatial position, searched inside nested backbones too (transfer models call their
  backbone as one layer). A functional sub-model outputs the feature map, the input of the
  softmax layer and the probabilities in one forward pass.
* The score is the class *logit* (the input of the softmax) where it can be recovered (an
  ``Activation("softmax")`` or a softmax ``Dense`` output layer), as in the paper; gradients of
  saturated probabilities are close to zero and give noisy maps.
* Gradients use TensorFlow's ``GradientTape``, so this module needs the TensorFlow backend.
  Models trained elsewhere (e.g. a GPU machine with another backend) are ``.keras`` files
  that load here unchanged.
* :func:`gradcam_tfkerasvis` runs tf-keras-vis' ``Gradcam`` on the same layer and score as an
  independent cross-check (flat models only: it cannot reach into a nested backbone).

Images follow the project contract: uint8 (N, H, W) faces; models smaller than the image see
the centre crop (:mod:`fer_study.model_input`) and the heatmap is placed
back into the full frame, zero outside the crop, so face regions keep their coordinates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import keras
import numpy as np

from fer_study.labels import EMOTIONS, FACE_REGIONS, NUM_CLASSES
from fer_study.model_input import center_crop

_CONV_TYPES = (keras.layers.Conv2D, keras.layers.SeparableConv2D, keras.layers.DepthwiseConv2D)


def _require_tensorflow() -> None:
    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(
            f"Grad-CAM needs the TensorFlow backend (KERAS_BACKEND=tensorflow), this process "
            f"runs {keras.backend.backend()!r}: copy the .keras file to a machine with "
            f"TensorFlow and run it there")


# --------------------------------------------------------------------------- layer search

def _output_shape(layer) -> tuple:
    try:
        return tuple(layer.output.shape)
    except (ValueError, AttributeError):  # called in several graphs: all share one shape
        nodes = getattr(layer, "_inbound_nodes", [])
        return tuple(nodes[0].output_tensors[0].shape) if nodes else ()


def _is_feature_conv(layer) -> bool:
    if not isinstance(layer, _CONV_TYPES):
        return False
    shape = _output_shape(layer)
    # Squeeze-excitation 1x1 convs on pooled (1, 1, C) maps are convs but carry no location.
    return len(shape) == 4 and (shape[1] is None or shape[1] * shape[2] > 1)


def find_last_conv(model: keras.Model) -> list[str]:
    """Name path to the last spatial conv layer, e.g. ``["conv2d_3"]`` or, for a transfer
    model, ``["backbone", "conv_head"]``. Raises ValueError if there is none."""
    for layer in reversed(model.layers):
        if isinstance(layer, keras.Model):
            try:
                return [layer.name, *find_last_conv(layer)]
            except ValueError:
                continue
        if _is_feature_conv(layer):
            return [layer.name]
    raise ValueError(f"model {model.name!r} has no convolution with a spatial 4-D output; "
                     f"Grad-CAM needs one")


def _resolve_layer(model: keras.Model, layer: str | Sequence[str] | None) -> list[str]:
    if layer is None:
        return find_last_conv(model)
    path = [layer] if isinstance(layer, str) else list(layer)
    scope = model
    for i, name in enumerate(path):
        try:
            scope = scope.get_layer(name)
        except ValueError:
            names = [lay.name for lay in scope.layers]
            raise ValueError(f"no layer {name!r} in {scope.name!r}; its layers: {names}") \
                from None
        if i < len(path) - 1 and not isinstance(scope, keras.Model):
            raise ValueError(f"{'/'.join(path[:i + 1])} is not a nested model")
    if len(_output_shape(scope)) != 4:
        raise ValueError(f"layer {'/'.join(path)} outputs shape {_output_shape(scope)}; "
                         f"Grad-CAM needs a 4-D feature map")
    return path


# --------------------------------------------------------------------------- sub-model

def _feature_model(model: keras.Model, path: list[str], head=None) -> keras.Model:
    """model.inputs -> [feature map at `path`, model output] (+ the input of layer `head`)."""
    if len(path) == 1:
        try:
            outs = [model.get_layer(path[0]).output, model.outputs[0]]
            return keras.Model(model.inputs, outs + ([head.input] if head is not None else []))
        except (ValueError, AttributeError):
            pass  # a layer shared with another graph has no single .output: re-trace below
    # A nested feature map lives in the inner model's graph, unreachable from the outer
    # inputs: re-trace the outer graph (same layers, same weights) with the nested model
    # replaced by a two-output version of itself, collecting the tensors we need on the way.
    inner = _feature_model(model.get_layer(path[0]), path[1:]) if len(path) > 1 else None
    found: dict = {}

    def call(layer, *args, **kwargs):
        if inner is not None and layer.name == path[0]:
            found["features"], out = inner(*args, **kwargs)
            return out
        if layer is head:
            found["head_in"] = args[0]
        out = layer(*args, **kwargs)
        if inner is None and layer.name == path[0]:
            found["features"] = out
        return out

    traced = keras.models.clone_model(model, clone_function=lambda layer: layer,
                                      call_function=call)
    outs = [found["features"], traced.outputs[0]]
    return keras.Model(traced.inputs, outs + ([found["head_in"]] if head is not None else []))


def _softmax_head(model: keras.Model):
    """The output layer when it is a plain softmax (Activation or Dense), else None."""
    last = model.layers[-1]
    act = getattr(last, "activation", None)
    if act is not keras.activations.softmax or not isinstance(
            last, (keras.layers.Activation, keras.layers.Dense)):
        return None
    return last


@dataclass
class GradcamResult:
    heatmaps: np.ndarray  # float32 (N, H, W) in [0, 1], aligned with the input images
    probs: np.ndarray  # float32 (N, 7) model probabilities
    class_idx: np.ndarray  # int64 (N,): the class each map explains
    layer: list[str]  # name path of the feature layer
    score: str  # "logit" or "prob"
    cams: np.ndarray  # float32 (N, h, w): raw maps at feature-map resolution, unnormalised


class GradCAM:
    """Grad-CAM for one model; build once, call on batches of uint8 faces.

    Args:
        model: a classifier of the project contract (input (S, S, 1) pixels 0..255).
        layer: feature layer name or name path (nested); None = last spatial conv layer.
        score: "logit" (pre-softmax class score, default) or "prob".
    """

    def __init__(self, model: keras.Model, layer: str | Sequence[str] | None = None,
                 score: str = "logit") -> None:
        _require_tensorflow()
        if score not in ("logit", "prob"):
            raise ValueError(f"score must be 'logit' or 'prob', got {score!r}")
        self.model = model
        self.layer = _resolve_layer(model, layer)
        self.input_size = int(model.input_shape[1])
        head = _softmax_head(model) if score == "logit" else None
        self.score = "logit" if head is not None else "prob"
        # With a softmax head the logits are recomputed from its input: one matmul at most.
        self._head = head
        self._sub = _feature_model(model, self.layer, head)
        self._step = None

    def _logits(self, head_in, probs):
        import tensorflow as tf

        if self._head is None:
            return probs
        if isinstance(self._head, keras.layers.Dense):
            logits = tf.matmul(head_in, self._head.kernel)
            return logits + self._head.bias if self._head.use_bias else logits
        return head_in

    def _step_fn(self):
        """The compiled batch step: (images, classes; -1 = predicted) -> cams, probs, classes.
        One trace for every batch size; eager tapes would cost ~4x more per image."""
        if self._step is None:
            import tensorflow as tf

            s = self.input_size

            @tf.function(input_signature=[tf.TensorSpec([None, s, s, 1], tf.float32),
                                          tf.TensorSpec([None], tf.int64)])
            def step(x, cls):
                with tf.GradientTape() as tape:
                    tape.watch(x)  # records every op from the input on, trainable or frozen
                    feats, p, *rest = self._sub(x, training=False)
                    scores = self._logits(rest[0] if rest else None, p)
                    cls = tf.where(cls < 0, tf.argmax(p, axis=1, output_type=tf.int64), cls)
                    chosen = tf.gather(scores, cls, axis=1, batch_dims=1)
                grads = tape.gradient(chosen, feats)
                alpha = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
                return tf.nn.relu(tf.reduce_sum(alpha * feats, axis=-1)), p, cls

            self._step = step
        return self._step

    def __call__(self, images: np.ndarray, class_idx: int | np.ndarray | None = None,
                 batch_size: int = 64) -> GradcamResult:
        images = np.asarray(images)
        if images.ndim != 3:
            raise ValueError(f"images must be uint8 (N, H, W), got shape {images.shape}")
        n, h, w = images.shape
        s = self.input_size
        if s > min(h, w):
            raise ValueError(f"images ({h}x{w}) are smaller than the model input ({s})")
        wanted = _targets(class_idx, n)
        crops = center_crop(images, s) if (h, w) != (s, s) else images
        step = self._step_fn()
        cams, probs, targets = [], [], []
        for start in range(0, n, batch_size):
            x = np.asarray(crops[start:start + batch_size], np.float32)[..., None]
            cam, p, cls = step(x, wanted[start:start + batch_size])
            cams.append(cam.numpy())
            probs.append(p.numpy())
            targets.append(cls.numpy())
        cams_all = np.concatenate(cams).astype(np.float32)
        maps = np.stack([_upsample(c, s) for c in cams_all])
        peak = maps.reshape(n, -1).max(axis=1)
        maps = np.divide(maps, peak[:, None, None], out=np.zeros_like(maps),
                         where=peak[:, None, None] > 0)
        return GradcamResult(_into_frame(maps, h, w), np.concatenate(probs).astype(np.float32),
                             np.concatenate(targets).astype(np.int64), self.layer, self.score,
                             cams_all)


def _targets(class_idx, n: int) -> np.ndarray:
    """Per-image class to explain; -1 = the predicted class."""
    if class_idx is None:
        return np.full(n, -1, np.int64)
    c = np.asarray(class_idx, dtype=np.int64)
    if c.ndim == 0:
        c = np.full(n, int(c))
    if c.shape != (n,):
        raise ValueError(f"class_idx must be an int or one per image ({n}), got {c.shape}")
    if c.min() < 0 or c.max() >= NUM_CLASSES:
        raise ValueError(f"class_idx must be in 0..{NUM_CLASSES - 1}")
    return c


def _upsample(cam: np.ndarray, size: int) -> np.ndarray:
    import cv2

    return cv2.resize(cam.astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR)


def _into_frame(maps: np.ndarray, h: int, w: int) -> np.ndarray:
    n, s, _ = maps.shape
    if (s, s) == (h, w):
        return maps
    out = np.zeros((n, h, w), np.float32)
    top, left = (h - s) // 2, (w - s) // 2  # the offsets center_crop uses
    out[:, top:top + s, left:left + s] = maps
    return out


def gradcam(model: keras.Model, images_uint8: np.ndarray,
            class_idx: int | np.ndarray | None = None, layer: str | Sequence[str] | None = None,
            score: str = "logit") -> np.ndarray:
    """Grad-CAM heatmaps (N, H, W) in [0, 1] for uint8 faces (N, H, W).

    class_idx: None = each image's predicted class, an int for all, or one per image (e.g.
    the true labels).
    """
    return GradCAM(model, layer, score)(images_uint8, class_idx).heatmaps


# --------------------------------------------------------------------------- cross-check

def gradcam_tfkerasvis(model: keras.Model, images_uint8: np.ndarray,
                       class_idx: int | np.ndarray, layer: str | Sequence[str] | None = None,
                       score: str = "logit", expand: bool = True) -> np.ndarray:
    """The same maps computed by tf-keras-vis' ``Gradcam`` (an independent implementation).

    expand=True: (N, H, W) in [0, 1] like :func:`gradcam` (tf-keras-vis upsamples with
    corner-aligned linear zoom, this package with OpenCV's pixel-centre convention, so the two
    differ slightly at coarse maps); expand=False: the raw (N, h, w) feature-resolution maps,
    comparable to ``GradcamResult.cams`` without any interpolation difference.

    Raises ValueError for feature layers inside nested models, which tf-keras-vis cannot
    reach.
    """
    _require_tensorflow()
    from tf_keras_vis.gradcam import Gradcam
    from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
    from tf_keras_vis.utils.scores import CategoricalScore

    path = _resolve_layer(model, layer)
    if len(path) > 1:
        raise ValueError(f"tf-keras-vis cannot reach {'/'.join(path)} inside a nested model")
    images = np.asarray(images_uint8)
    n, h, w = images.shape
    s = int(model.input_shape[1])
    crops = center_crop(images, s) if (h, w) != (s, s) else images
    c = np.asarray(class_idx, dtype=np.int64)
    c = np.full(n, int(c)) if c.ndim == 0 else c
    # ReplaceToLinear makes the score the logit; it edits a clone, never `model` itself.
    modifier = ReplaceToLinear() if score == "logit" and _softmax_head(model) else None
    vis = Gradcam(model, model_modifier=modifier, clone=True)
    cam = vis(CategoricalScore(c.tolist()), np.asarray(crops, np.float32)[..., None],
              penultimate_layer=path[0], seek_penultimate_conv_layer=False,
              expand_cam=expand, normalize_cam=expand)
    if not expand:
        return np.asarray(cam, np.float32)
    cam = np.asarray(cam, np.float32).reshape(n, s, s)
    peak = cam.reshape(n, -1).max(axis=1)
    cam = np.divide(cam, peak[:, None, None], out=np.zeros_like(cam),
                    where=peak[:, None, None] > 0)
    return _into_frame(cam, h, w)


def map_correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-image Pearson correlation of two stacks of maps (NaN where one is constant)."""
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    den = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (a * b).sum(axis=1) / den, np.nan)


# --------------------------------------------------------------------------- analysis

def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.45,
            cmap: str = "jet") -> np.ndarray:
    """A grey face with its heatmap blended on top, as RGB uint8 (H, W, 3)."""
    from matplotlib import colormaps

    grey = np.repeat(np.asarray(image, np.float32)[..., None] / 255.0, 3, axis=-1)
    colour = colormaps[cmap](np.clip(heatmap, 0.0, 1.0))[..., :3]
    # Blend weight grows with the heat, so cold areas keep the face readable.
    a = alpha * np.clip(heatmap, 0.0, 1.0)[..., None] ** 0.5
    return np.round(255 * ((1 - a) * grey + a * colour)).astype(np.uint8)


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


def region_table(heatmaps: np.ndarray, labels: np.ndarray, preds: np.ndarray | None = None):
    """Mean heat-mass share per class in the eye and mouth regions (a DataFrame), with a last
    row giving each region's share of the image area: what a uniform map would score."""
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
    area = {f"{r}_mass": float(m.mean()) for r, m in region_masks(heatmaps.shape[1:]).items()}
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


# --------------------------------------------------------------------------- plots

def plot_class_means(means: np.ndarray, counts: np.ndarray, mean_faces: np.ndarray | None = None,
                     title: str = "Mean Grad-CAM per true class"):
    """One panel per class: the mean heatmap over the class's mean face, regions outlined."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, NUM_CLASSES, figsize=(2.0 * NUM_CLASSES, 2.5))
    for c, ax in enumerate(axes):
        face = mean_faces[c] if mean_faces is not None else np.full(means.shape[1:], 128.0)
        ax.imshow(overlay(face, means[c] / max(means[c].max(), 1e-12)))
        _outline_regions(ax, means.shape[1:])
        ax.set_title(f"{EMOTIONS[c]} (n={counts[c]})", fontsize=9)
        ax.axis("off")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def _outline_regions(ax, shape: tuple[int, int]) -> None:
    from matplotlib.patches import Rectangle

    h, w = shape
    for name, (r0, r1, c0, c1) in FACE_REGIONS.items():
        ax.add_patch(Rectangle((c0 * w - 0.5, r0 * h - 0.5), (c1 - c0) * w, (r1 - r0) * h,
                               fill=False, lw=0.8, ls="--", ec="white", alpha=0.8))
        ax.text(c0 * w, r0 * h - 1, name, color="white", fontsize=6, va="bottom")


def plot_examples(images: np.ndarray, heatmaps: np.ndarray, labels: np.ndarray,
                  probs: np.ndarray, examples: dict[int, dict[str, list[int]]],
                  per_class: int = 2):
    """Rows = true classes; columns = `per_class` correct then `per_class` wrong examples,
    each titled true -> predicted (confidence)."""
    import matplotlib.pyplot as plt

    cols = 2 * per_class
    fig, axes = plt.subplots(NUM_CLASSES, cols, figsize=(1.9 * cols, 2.0 * NUM_CLASSES),
                             squeeze=False)
    for c in range(NUM_CLASSES):
        picks = [("correct", i) for i in examples[c]["correct"][:per_class]]
        picks += [(None, None)] * (per_class - len(picks))
        picks += [("wrong", i) for i in examples[c]["wrong"][:per_class]]
        picks += [(None, None)] * (cols - len(picks))
        for j, (kind, i) in enumerate(picks):
            ax = axes[c, j]
            ax.axis("off")
            if i is None:
                ax.text(0.5, 0.5, f"no {'correct' if j < per_class else 'wrong'}\nexample",
                        transform=ax.transAxes, ha="center", va="center", fontsize=7,
                        color="grey")
                continue
            p = int(probs[i].argmax())
            ax.imshow(overlay(images[i], heatmaps[i]))
            ax.set_title(f"{EMOTIONS[labels[i]][:3]}->{EMOTIONS[p][:3]} {probs[i, p]:.2f}",
                         fontsize=8, color="green" if kind == "correct" else "red")
        axes[c, 0].text(-0.06, 0.5, EMOTIONS[c], transform=axes[c, 0].transAxes, rotation=90,
                        va="center", ha="right", fontsize=9)
    fig.suptitle(f"Grad-CAM: {per_class} most confident correct (green) and wrong (red) "
                 f"per class", fontsize=10)
    fig.tight_layout()
    return fig


def plot_cross_check(images: np.ndarray, ours: np.ndarray, theirs: np.ndarray,
                     corr: np.ndarray, n: int = 6):
    """Our Grad-CAM vs tf-keras-vis on a few faces, with their correlation."""
    import matplotlib.pyplot as plt

    n = min(n, len(images))
    fig, axes = plt.subplots(2, n, figsize=(1.9 * n, 4.2), squeeze=False)
    for j in range(n):
        axes[0, j].imshow(overlay(images[j], ours[j]))
        axes[0, j].set_title(f"r = {corr[j]:.3f}", fontsize=9)
        axes[1, j].imshow(overlay(images[j], theirs[j]))
        axes[0, j].axis("off")
        axes[1, j].axis("off")
    for row, name in enumerate(("fer_study", "tf-keras-vis")):
        axes[row, 0].text(-0.06, 0.5, name, transform=axes[row, 0].transAxes, rotation=90,
                          va="center", ha="right")
    fig.suptitle("Grad-CAM cross-check (top: this package, bottom: tf-keras-vis)", fontsize=10)
    fig.tight_layout()
    return fig
