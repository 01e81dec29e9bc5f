"""Grad-CAM (Selvaraju et al. 2017) for the project's classifiers.

The class score's gradient with respect to the last convolutional feature map A (h, w, C)
gives one weight per channel, alpha_c = mean over (h, w) of d score / d A_c; the map is
ReLU(sum_c alpha_c A_c), upsampled to the image and divided by its maximum, so every heatmap
lies in [0, 1] and 0 means "no positive evidence".

* The feature layer is found automatically (:func:`find_feature_layer`): the *activation* of
  the last convolution with more than one spatial position, i.e. the conv followed by the
  BatchNorm / ReLU / residual Add layers that act on its map pixel by pixel (vgg_style's last
  block is conv -> BN -> ReLU; the raw conv output's class gradients can cancel to an
  all-zero map). Nested backbones are searched too (transfer models call their backbone as
  one layer). A functional sub-model outputs the feature map, the input of the softmax layer
  and the probabilities in one forward pass.
* A deployment model (:func:`fer_study.models.deployment_model`: members, each on the image
  and, with flip TTA, on its mirror image, probabilities averaged) is explained view by view
  (:func:`deployment_views`): each member's map on each view, mirror views flipped back, all
  averaged, for the class the deployment model predicts. Its maps are therefore exactly
  mirror-symmetric in the way its predictions are: map(flip x) = flip(map(x)).
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

What is in the maps and whether they are faithful to the model (a deletion test against a
uniform map): :mod:`fer_study.gradcam_analysis`; their figures: :mod:`fer_study.gradcam_plots`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import keras
import numpy as np

from fer_study.labels import NUM_CLASSES
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


# Layers that act on a feature map pixel by pixel (keeping its grid): a conv's activation is
# the output of the chain of these that follows it.
_POINTWISE = (keras.layers.BatchNormalization, keras.layers.Activation, keras.layers.ReLU,
              keras.layers.LeakyReLU, keras.layers.PReLU, keras.layers.ELU, keras.layers.Add)


def _consumers(scope: keras.Model, layer) -> list:
    """The layers of `scope` that take `layer`'s output as an input (in scope's graph)."""
    out = []
    for other in scope.layers:
        for node in getattr(other, "_inbound_nodes", []):
            sources = [getattr(t, "_keras_history", None) for t in node.input_tensors]
            if any(h is not None and h.operation is layer for h in sources):
                out.append(other)
                break
    return out


def find_feature_layer(model: keras.Model) -> list[str]:
    """Name path to the map Grad-CAM explains: the activation of the last spatial conv.

    From :func:`find_last_conv`'s layer, follow its only consumer while that is pointwise
    (BatchNorm, activation, residual Add) on the same grid: vgg_style gives its last block's
    ReLU, ``["activation_7"]``; a conv with a built-in activation (or followed by pooling)
    is its own answer. Raises ValueError if the model has no spatial conv.
    """
    path = find_last_conv(model)
    scope = model
    for name in path[:-1]:
        scope = scope.get_layer(name)
    layer = scope.get_layer(path[-1])
    grid = _output_shape(layer)[1:3]
    while True:
        nxt = _consumers(scope, layer)
        if len(nxt) != 1 or not isinstance(nxt[0], _POINTWISE) \
                or tuple(_output_shape(nxt[0])[1:3]) != tuple(grid):
            return [*path[:-1], layer.name]
        layer = nxt[0]


def deployment_views(model: keras.Model) -> list[tuple[keras.Model, bool]]:
    """``(member, mirrored)`` per call of a nested classifier (a sub-model with a 7-way
    output) in `model`, as :func:`fer_study.models.deployment_model` builds them: each member
    on the image, and with flip TTA also on its mirror image. Empty for a plain classifier
    or a transfer model (whose nested backbone outputs a feature map, not classes).

    Raises ValueError for a member fed anything else: its map could not be placed back on
    the image.
    """
    from fer_study.models import HorizontalFlip

    views = []
    for layer in model.layers:
        shape = _output_shape(layer)
        if not isinstance(layer, keras.Model) or len(shape) != 2 or shape[-1] != NUM_CLASSES:
            continue
        for node in layer._inbound_nodes:
            src = node.input_tensors[0]._keras_history.operation
            mirrored = isinstance(src, HorizontalFlip)
            if mirrored:
                src = src._inbound_nodes[0].input_tensors[0]._keras_history.operation
            if not isinstance(src, keras.layers.InputLayer):
                raise ValueError(f"member {layer.name!r} of {model.name!r} is called on the "
                                 f"output of {src.name!r}; Grad-CAM explains members called "
                                 f"on the image or its mirror image only")
            views.append((layer, mirrored))
    return views


def _resolve_layer(model: keras.Model, layer: str | Sequence[str] | None) -> list[str]:
    if layer is None:
        return find_feature_layer(model)
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
    if len(path) > 1 and len(getattr(model.get_layer(path[0]), "_inbound_nodes", [])) > 1:
        raise ValueError(f"{path[0]!r} is called more than once in {model.name!r}: its feature "
                         f"map is not one tensor (a deployment model's members are explained "
                         f"view by view by GradCAM itself)")
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
    layer: list[str]  # name path of the feature layer (a deployment model: its first member's)
    score: str  # "logit" or "prob"
    # float32 (N, h, w): raw maps at feature-map resolution, unnormalised (a deployment model
    # whose members have different grids: at the model's input resolution)
    cams: np.ndarray
    views: list[str] = field(default_factory=list)  # what was averaged: "member/layer[ (mirrored)]"


class GradCAM:
    """Grad-CAM for one model; build once, call on batches of uint8 faces.

    Args:
        model: a classifier of the project contract (input (S, S, 1) pixels 0..255), or a
            deployment model of such classifiers (:func:`deployment_views`).
        layer: feature layer name or name path (nested); None = the last spatial conv's
            activation (:func:`find_feature_layer`). For a deployment model, a layer inside
            each member.
        score: "logit" (pre-softmax class score, default) or "prob".
    """

    def __init__(self, model: keras.Model, layer: str | Sequence[str] | None = None,
                 score: str = "logit") -> None:
        _require_tensorflow()
        if score not in ("logit", "prob"):
            raise ValueError(f"score must be 'logit' or 'prob', got {score!r}")
        self.model = model
        self.input_size = int(model.input_shape[1])
        self._step = None
        views = deployment_views(model)
        if views:
            # One explainer per member (shared by its views), its layer inside the member.
            members: dict[str, GradCAM] = {}
            for member, _ in views:
                if member.name not in members:
                    inner = [layer] if isinstance(layer, str) else layer
                    if inner and inner[0] == member.name:
                        inner = inner[1:]
                    members[member.name] = GradCAM(member, inner or None, score)
            self._views = [(members[m.name], mirrored) for m, mirrored in views]
            first = self._views[0][0]
            self.layer = [views[0][0].name, *first.layer]
            self.score = first.score
            self.views = [f"{m.name}/{'/'.join(members[m.name].layer)}"
                          + (" (mirrored)" if mirrored else "") for m, mirrored in views]
            return
        self._views = []
        self.layer = _resolve_layer(model, layer)
        self.views = ["/".join(self.layer)]
        head = _softmax_head(model) if score == "logit" else None
        self.score = "logit" if head is not None else "prob"
        # With a softmax head the logits are recomputed from its input: one matmul at most.
        self._head = head
        self._sub = _feature_model(model, self.layer, head)

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

    def _batch(self, x: np.ndarray, wanted: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """float32 (n, S, S, 1) model inputs -> raw cams, probabilities, explained classes."""
        if not self._views:
            cam, p, cls = self._step_fn()(x, wanted)
            return cam.numpy(), p.numpy(), cls.numpy()
        probs = np.asarray(self.model(x, training=False), np.float32)
        cls = np.where(wanted < 0, probs.argmax(axis=1), wanted).astype(np.int64)
        cams = []
        for explainer, mirrored in self._views:
            view = x[:, :, ::-1] if mirrored else x
            cam = explainer._batch(np.ascontiguousarray(view), cls)[0]
            cams.append(cam[:, :, ::-1] if mirrored else cam)  # back onto the image
        if len({c.shape for c in cams}) > 1:  # members with different grids
            cams = [np.stack([_upsample(m, self.input_size) for m in c]) for c in cams]
        return np.mean(cams, axis=0), probs, cls

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
        cams, probs, targets = [], [], []
        for start in range(0, n, batch_size):
            x = np.asarray(crops[start:start + batch_size], np.float32)[..., None]
            cam, p, cls = self._batch(x, wanted[start:start + batch_size])
            cams.append(cam)
            probs.append(p)
            targets.append(cls)
        cams_all = np.concatenate(cams).astype(np.float32)
        maps = np.stack([_upsample(c, s) for c in cams_all])
        peak = maps.reshape(n, -1).max(axis=1)
        maps = np.divide(maps, peak[:, None, None], out=np.zeros_like(maps),
                         where=peak[:, None, None] > 0)
        return GradcamResult(_into_frame(maps, h, w), np.concatenate(probs).astype(np.float32),
                             np.concatenate(targets).astype(np.int64), list(self.layer),
                             self.score, cams_all, list(self.views))


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


# --------------------------------------------------------------------------- drawing

def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.45,
            cmap: str = "jet") -> np.ndarray:
    """A grey face with its heatmap blended on top, as RGB uint8 (H, W, 3)."""
    from matplotlib import colormaps

    grey = np.repeat(np.asarray(image, np.float32)[..., None] / 255.0, 3, axis=-1)
    colour = colormaps[cmap](np.clip(heatmap, 0.0, 1.0))[..., :3]
    # Blend weight grows with the heat, so cold areas keep the face readable.
    a = alpha * np.clip(heatmap, 0.0, 1.0)[..., None] ** 0.5
    return np.round(255 * ((1 - a) * grey + a * colour)).astype(np.uint8)
